"""Embeds registered Bokeh apps in Django pages: ``server_document``/``server_session`` scripts
with the right URLs, and ``pull_session`` with this site's session signing.

In a view::

    from bokehserve_django.embed import app_script

    def dashboard(request):
        return render(request, "dashboard.html", {"plot": app_script(request, "sliders")})

In a template: ``{% load bokehserve %}{% bokeh_app "sliders" %}``.

The guide's "customise a session before the browser sees it" recipe::

    from bokehserve_django.embed import pull_session, session_script

    def view(request):
        with pull_session(request, "sliders") as session:
            session.document.get_model_by_name("title").text = f"Hello {request.user}"
            script = session_script(request, "sliders", session.id)
        return render(request, "page.html", {"script": script})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from bokeh.client import ClientSession
from bokeh.client.util import websocket_url_for_server_url
from bokeh.embed import server_document, server_session

from . import signing
from .urls_util import app_url

if TYPE_CHECKING:
    from django.http import HttpRequest

__all__ = ("SignedClientSession", "app_script", "app_url_for", "pull_session", "session_script")


def app_url_for(request: HttpRequest | None, app_name: str) -> str:
    """The absolute URL of an app as the browser of ``request`` reaches it.

    Uses ``request.build_absolute_uri``, so a prefix, SCRIPT_NAME and a proxy's
    X-Forwarded-Host/Proto (with USE_X_FORWARDED_HOST / SECURE_PROXY_SSL_HEADER) apply.
    """
    path = app_url(app_name).rstrip("/")
    if request is None:
        return path
    return request.build_absolute_uri(path)


def app_script(
    request: HttpRequest | None,
    app_name: str,
    *,
    arguments: dict[str, str] | None = None,
    relative_urls: bool = False,
    resources: str | None = "default",
    headers: dict[str, str] | None = None,
    with_credentials: bool = False,
) -> str:
    """A ``<script>`` that opens a new session of ``app_name`` in the page (bokeh's ``server_document``)."""
    return server_document(
        app_url_for(request, app_name),
        relative_urls=relative_urls,
        resources=resources,
        arguments=arguments,
        headers=headers,
        with_credentials=with_credentials,
    )


def session_script(
    request: HttpRequest | None,
    app_name: str,
    session_id: str,
    *,
    relative_urls: bool = False,
    resources: str | None = "default",
    headers: dict[str, str] | None = None,
) -> str:
    """A ``<script>`` that shows the existing session ``session_id`` (bokeh's ``server_session``).

    Create ids with ``bokehserve_django.signing.generate_session_id()`` (signed when the
    site signs sessions), or take ``session.id`` from :func:`pull_session`.
    """
    return server_session(
        session_id=session_id,
        url=app_url_for(request, app_name),
        relative_urls=relative_urls,
        resources=resources,
        headers=headers,
    )


class SignedClientSession(ClientSession):
    """``bokeh.client.ClientSession`` whose token is signed with this site's key and settings."""

    @property
    def token(self) -> str:
        return signing.generate_token(self.id)

    def close(self, why: str = "closed") -> None:
        """Send the changes still queued, then close.

        bokeh.client only queues a PATCH-DOC when the document changes; its close() sends
        the close frame at once, so the changes of a ``with pull_session(...)`` block
        would never reach the server. A round trip first flushes them (the server applies
        them before it answers).
        """
        if self.connected:
            self.force_roundtrip()
        super().close(why)


def pull_session(
    request: HttpRequest | None,
    app_name: str,
    *,
    url: str | None = None,
    session_id: str | None = None,
    arguments: dict[str, str] | None = None,
    io_loop: Any = None,
) -> SignedClientSession:
    """``bokeh.client.pull_session`` for a registered app, with an id and token this server accepts.

    ``url`` defaults to the app's URL as seen by ``request``; inside the server that
    serves the app, pass ``url="http://127.0.0.1:<port>/<app>"`` if the public address
    is not reachable from the server itself. Call from a sync view (bokeh.client runs
    its own event loop in the calling thread).
    """
    server_url = url or app_url_for(request, app_name)
    if urlsplit(server_url).scheme not in ("http", "https"):
        raise ValueError(f"pull_session needs an absolute http(s) URL for {app_name!r}; pass request= or url=.")
    session = SignedClientSession(
        session_id=session_id or signing.generate_session_id(),
        websocket_url=websocket_url_for_server_url(_without_query(server_url)),
        io_loop=io_loop,
        arguments=arguments,
    )
    session.pull()
    return session


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))

"""Builds Panel apps with Panel's own functions, as ``panel serve`` does, for our session runtime.

Imports panel: only ``bokehserve_django.panel`` imports this module, for an app that needs it.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from panel.io.application import (
    Application as _PanelApplication,
    build_applications,
    build_single_handler_application,
)
from panel.io.document import extra_socket_handlers
from panel.io.location import Location, _get_location_params
from panel.io.state import set_curdoc, state
from panel.util import edit_readonly

from ..exceptions import InvalidAppSpec
from ..sessions import SessionConnection
from . import users

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from bokeh.application.application import SessionContext
    from bokeh.document import Document
    from bokeh.document.events import DocumentPatchedEvent
    from bokeh.protocol.message import Message

__all__ = ("PanelApplication", "build_application")


class PanelApplication(_PanelApplication):
    """Panel's Application, adjusted to where our sessions run their code.

    Our sessions build documents in a worker thread (docs/apps.md, "Django's ORM in apps")
    and run callbacks on the event loop, whereas ``panel serve`` does both on the loop.
    Panel records the building thread as the document's own and queues updates made from
    any other one, so once the app code has run the document is handed back to the loop's
    thread. pn.state.location is filled from our request, which Panel cannot read itself.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop_threads: weakref.WeakKeyDictionary[Document, int] = weakref.WeakKeyDictionary()

    async def on_session_created(self, session_context: SessionContext) -> None:
        document = session_context._document
        self._loop_threads[document] = threading.get_ident()
        _set_location(document, session_context.request)
        await super().on_session_created(session_context)

    def initialize_document(self, doc: Document) -> None:
        try:
            super().initialize_document(doc)
        finally:
            loop_thread = self._loop_threads.pop(doc, None)
            if loop_thread is not None:
                state._thread_id_[doc] = loop_thread

    def _set_session_prefix(self, doc: Document) -> None:
        # Panel reads the embed's absolute URL from request.arguments, where our requests
        # leave bokeh-* names out (as bokeh serve's user arguments do); the query has it.
        super()._set_session_prefix(doc)
        context = doc.session_context
        request = getattr(context, "request", None) if context is not None else None
        absolute_url = _autoload_absolute_url(request)
        if absolute_url is None:
            return
        app_path = context.server_context.application_context.url
        root = absolute_url.rstrip("/")
        if root.endswith(app_path):
            root = root[: -len(app_path)]
        with set_curdoc(doc):
            # As in Panel's own handler: rel_path becomes this server's absolute root, so
            # component stylesheets and resources point back at this server, not at the
            # page that embeds the app.
            state.rel_path = root


def _autoload_absolute_url(request: Any) -> str | None:
    """The ``bokeh-absolute-url`` of the autoload.js request that created a session, if any.

    Only autoload.js requests count (views.autoload_js has checked the URL before creating
    the session): on a page URL the argument is anyone's to write, and would point the
    page's stylesheets at another host.
    """
    if request is None or not (getattr(request, "path", "") or "").endswith("/autoload.js"):
        return None
    values = parse_qs(getattr(request, "query", "") or "").get("bokeh-absolute-url")
    if not values or urlsplit(values[0]).scheme not in ("http", "https"):
        return None
    return values[0]


def _set_location(document: Document, request: Any) -> None:
    """pn.state.location of the session, from the page request (Panel reads only Tornado's)."""
    if request is None or document in state._locations:
        return
    location = Location()
    params = _get_location_params(request.protocol, request.host, request.uri)
    with set_curdoc(document), edit_readonly(location):
        location.param.update(params)
    state._locations[document] = location


def _write_through(
    connection: SessionConnection, events: list[DocumentPatchedEvent] | None = None, msg: Message[Any] | None = None
) -> list[Awaitable[None]]:
    """How Panel writes to our connections (it awaits what this returns, as tornado's write futures)."""
    if msg is None:
        if not events:
            return []
        msg = connection.protocol.create("PATCH-DOC", events)
    return [connection.send_message(msg)]


def build_application(spec: Any, argv: list[str]) -> PanelApplication:
    """A PanelApplication for a file or directory path, a Panel object, template or function."""
    users.install()
    extra_socket_handlers[SessionConnection] = _write_through
    if isinstance(spec, str | os.PathLike):
        path = os.path.abspath(os.path.expanduser(os.fspath(spec)))
        try:
            built = build_single_handler_application(path, argv)
        except ValueError as exc:  # Panel's words for a path it cannot serve
            raise InvalidAppSpec(f"Cannot serve {path!r} as a Panel app: {exc}") from exc
    else:
        if argv:
            raise InvalidAppSpec(
                f"'args' are given for {spec!r}, but only scripts, notebooks, .md files and directories "
                "read sys.argv; pass settings to a Panel object or function in Python instead."
            )
        built = build_applications({"/": spec})["/"]
    application = PanelApplication(*built.handlers, metadata=built.metadata)
    application._admin = getattr(built, "_admin", None)
    return application

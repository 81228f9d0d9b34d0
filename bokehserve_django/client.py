"""Connects headless scripts and notebooks to protected apps as a Django user: ``pull_session``/``push_session`` with a bearer token.

bokeh 3.9's ``bokeh.client.pull_session``/``push_session`` send no request headers and make
their own session token, which a server that signs sessions refuses unless the script knows
its key. These helpers instead ask the app's ``autoload.js`` for a session (the server runs
the access policy, creates the session and signs its token), then open the WebSocket with
that token; both requests carry ``Authorization: Bearer <jwt>`` (``manage.py bokeh_token``)
and any other ``headers`` given::

    from bokehserve_django.client import pull_session

    with pull_session("https://bokeh.example.com/sales", bearer_token=TOKEN) as session:
        print(session.document.roots)

Needs no Django settings: it imports only bokeh, tornado and the standard library.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from bokeh.client.connection import ClientConnection
from bokeh.client.session import ClientSession
from bokeh.client.states import CONNECTED_BEFORE_ACK, DISCONNECTED, ErrorReason
from bokeh.client.util import websocket_url_for_server_url
from bokeh.client.websocket import WebSocketClientConnectionWrapper
from bokeh.server.callbacks import DocumentCallbackGroup
from bokeh.util.strings import format_url_query_arguments
from bokeh.util.token import get_session_id
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

if TYPE_CHECKING:
    from bokeh.document import Document
    from tornado.ioloop import IOLoop

__all__ = ("HeadlessClientError", "HeadlessClientSession", "pull_session", "push_session")

#: The session token in autoload.js's embed_items call (base64url segments and ".").
_TOKEN_IN_SCRIPT = re.compile(r'"token":\s*"([A-Za-z0-9_\-.]+)"')
#: Seconds to wait for the autoload.js answer (it runs the app's code for the new session).
HTTP_TIMEOUT = 60


class HeadlessClientError(OSError):
    """Raised when the server refuses the script, with its status (or close code) and reason."""


class _HeadersClientConnection(ClientConnection):
    """bokeh's ClientConnection, sending ``headers`` on the WebSocket upgrade."""

    def __init__(self, *args: Any, headers: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers = dict(headers)
        self._tornado_socket: Any = None

    async def _connect_async(self) -> None:
        # As bokeh 3.9's ClientConnection._connect_async, with headers on the HTTPRequest:
        # bokeh builds the request itself and offers no way to add any.
        formatted_url = format_url_query_arguments(self._url, self._arguments)
        request = HTTPRequest(formatted_url, headers=self._headers)
        try:
            socket = await websocket_connect(request, subprotocols=["bokeh", self._session.token], max_message_size=self._max_message_size)
            self._tornado_socket = socket
            self._socket = WebSocketClientConnectionWrapper(socket)
        except HTTPClientError as e:
            await self._transition_to_disconnected(DISCONNECTED(ErrorReason.HTTP_ERROR, e.code, e.message))
            return
        except Exception as e:
            await self._transition_to_disconnected(DISCONNECTED(ErrorReason.NETWORK_ERROR, None, repr(e)))
            return
        await self._transition(CONNECTED_BEFORE_ACK())

    @property
    def close_code(self) -> int | None:
        return getattr(self._tornado_socket, "close_code", None)

    @property
    def close_reason(self) -> str | None:
        return getattr(self._tornado_socket, "close_reason", None)


class HeadlessClientSession(ClientSession):
    """A ClientSession for a session the server created, opened with the server's token and ``headers``."""

    def __init__(self, session_token: str, websocket_url: str, *, headers: dict[str, str],
                 io_loop: IOLoop | None = None, max_message_size: int = 20 * 1024 * 1024) -> None:
        self._session_token = session_token
        super().__init__(session_id=get_session_id(session_token), websocket_url=websocket_url, io_loop=io_loop,
                         max_message_size=max_message_size)
        # ClientSession.__init__ builds its ClientConnection itself (and has not connected
        # it): swap in one that sends the headers, and the callbacks that use its loop.
        self._connection = _HeadersClientConnection(
            session=self, io_loop=io_loop, websocket_url=websocket_url, max_message_size=max_message_size,
            headers=headers,
        )
        self._callbacks = DocumentCallbackGroup(self._connection.io_loop)

    @property
    def token(self) -> str:
        """The token the server signed for this session (bokeh's would be unsigned or use env keys)."""
        return self._session_token

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code the server sent (4008: the user signed out), or None."""
        return self._connection.close_code

    @property
    def close_reason(self) -> str | None:
        return self._connection.close_reason

    def check_connection_errors(self) -> None:
        if self.connected:
            return
        if self.close_code is not None:
            raise HeadlessClientError(f"{self.url} closed the connection ({self.close_code}): {self.close_reason}")
        raise HeadlessClientError(f"Could not connect to {self.url}: {self.error_code or ''} {self.error_detail}".strip())

    def close(self, why: str = "closed") -> None:
        """Send the changes still queued, then close (bokeh's close() would drop them)."""
        if self.connected:
            self.force_roundtrip()
        super().close(why)


def _request_headers(bearer_token: str | None, headers: dict[str, str] | None) -> dict[str, str]:
    merged = dict(headers or {})
    if bearer_token is not None:
        merged["Authorization"] = f"Bearer {bearer_token}"
    return merged


def _session_token(app_url: str, headers: dict[str, str], arguments: dict[str, str] | None) -> str:
    """Ask the app's autoload.js for a new session; return the token the server signed for it."""
    query = {"bokeh-autoload-element": "headless", "resources": "none", **(arguments or {})}
    url = f"{app_url}/autoload.js?{urlencode(query)}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            script = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace").strip()
        if exc.headers.get_content_type() == "application/javascript":
            body = _denied_text(body) or body
        raise HeadlessClientError(f"{app_url} refused the session request ({exc.code}): {body[:500]}") from None
    match = _TOKEN_IN_SCRIPT.search(script)
    if match is None:
        raise HeadlessClientError(f"{app_url}/autoload.js answered without a session token; is this a Bokeh app URL?")
    return match.group(1)


def _denied_text(script: str) -> str | None:
    """The note of autoload.js's access-denied script ("You do not have access ...")."""
    match = re.search(r"createTextNode\((\"(?:[^\"\\]|\\.)*\")\)", script)
    return json.loads(match.group(1)) if match else None


def _app_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"Give the app's http(s) URL, e.g. https://bokeh.example.com/myapp, not {url!r}.")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _open(url: str, bearer_token: str | None, headers: dict[str, str] | None, arguments: dict[str, str] | None,
          io_loop: IOLoop | None, max_message_size: int) -> HeadlessClientSession:
    app_url = _app_url(url)
    request_headers = _request_headers(bearer_token, headers)
    token = _session_token(app_url, request_headers, arguments)
    session = HeadlessClientSession(
        token, websocket_url_for_server_url(app_url), headers=request_headers, io_loop=io_loop,
        max_message_size=max_message_size,
    )
    session.connect()
    session.check_connection_errors()
    return session


def pull_session(url: str, *, bearer_token: str | None = None, headers: dict[str, str] | None = None,
                 arguments: dict[str, str] | None = None, io_loop: IOLoop | None = None,
                 max_message_size: int = 20 * 1024 * 1024) -> HeadlessClientSession:
    """A new session of the app at ``url`` (its app code has run), with its document pulled.

    ``bearer_token`` is sent as ``Authorization: Bearer ...``; ``headers`` go on both requests
    too. ``arguments`` become the session's ``request.arguments``.
    """
    session = _open(url, bearer_token, headers, arguments, io_loop, max_message_size)
    session.pull()
    return session


def push_session(document: Document, url: str, *, bearer_token: str | None = None,
                 headers: dict[str, str] | None = None, arguments: dict[str, str] | None = None,
                 io_loop: IOLoop | None = None, max_message_size: int = 20 * 1024 * 1024) -> HeadlessClientSession:
    """A new session of the app at ``url`` whose document is replaced by ``document``."""
    session = _open(url, bearer_token, headers, arguments, io_loop, max_message_size)
    session.push(document)
    return session

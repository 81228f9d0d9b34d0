"""Helpers of the security tests: signed-in async clients, tokens out of pages, WebSockets in-process."""

from __future__ import annotations

import contextlib
import json
import re
import time
from typing import Any

from channels.testing import WebsocketCommunicator
from django.test import AsyncClient

#: Seconds to wait for one WebSocket event (the first session of a test runs the app).
TIMEOUT = 10
#: The test site as a browser on it would send it (127.0.0.1 is in ALLOWED_HOSTS).
SITE_HEADERS = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]


async def client_for(user: Any) -> AsyncClient:
    """An AsyncClient signed in as ``user`` (anonymous for None)."""
    client = AsyncClient()
    if user is not None:
        await client.aforce_login(user)
    return client


def cookie_header(client: AsyncClient) -> bytes:
    """The Cookie header a browser with ``client``'s cookies would send."""
    return "; ".join(f"{name}={morsel.value}" for name, morsel in client.cookies.items()).encode()


TOKEN_PATTERN = re.compile(r'"token":\s*"([A-Za-z0-9_\-.]+)"')


def token_in(text: str) -> str:
    """The session token that a page's or autoload.js's embed_items call carries."""
    match = TOKEN_PATTERN.search(text)
    assert match, f"no token in the response:\n{text[:2000]}"
    return match.group(1)


@contextlib.asynccontextmanager
async def websocket(app: str, token: str, cookie: bytes | None = None,
                    headers: list[tuple[bytes, bytes]] | None = None):
    """A WebsocketCommunicator against tests.asgi.application (disconnected on exit)."""
    from tests.asgi import application

    all_headers = list(SITE_HEADERS if headers is None else headers)
    if cookie:
        all_headers.append((b"cookie", cookie))
    communicator = WebsocketCommunicator(application, f"/{app}/ws", headers=all_headers,
                                         subprotocols=["bokeh", token])
    try:
        yield communicator
    finally:
        with contextlib.suppress(BaseException):
            await communicator.disconnect(timeout=TIMEOUT)


async def opens(communicator: WebsocketCommunicator) -> bool:
    """Whether the server accepts the WebSocket (and then sends ACK first)."""
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    if not connected:
        return False
    header = json.loads(await communicator.receive_from(TIMEOUT))
    assert header["msgtype"] == "ACK"
    await communicator.receive_from(TIMEOUT)
    await communicator.receive_from(TIMEOUT)
    return True


#: True once BokehJS has the document and a view of a root (echo.py has a second, view-less
#: root, the ColumnDataSource, so tests.browser.helpers.RENDERED_JS does not apply).
ECHO_RENDERED_JS = """() => {
    if (!window.Bokeh || Bokeh.documents.length === 0) return false;
    const views = Object.values(Bokeh.index);
    return Bokeh.documents[0].roots().some((root) => views.some((view) => view.model === root));
}"""


def wait_for(predicate, timeout: float = 10) -> bool:
    """Poll ``predicate`` (sync code) until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False

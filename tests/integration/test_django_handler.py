"""A Bokeh page and its WebSocket through either HTTP handler a site's asgi.py may use.

tests/asgi.py (like the README's) uses ``handlers.BokehASGIHandler``; docs/deploy.md says a
site may keep Django's own ``ASGIHandler``. Both serve the page here, in process, through
``bokeh_asgi_application``, and the page's token opens its session over the WebSocket.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.core.handlers.asgi import ASGIHandler

from bokehserve_django.handlers import BokehASGIHandler
from bokehserve_django.routing import bokeh_asgi_application
from bokehserve_django.sessions import runtime

TIMEOUT = 10
TOKEN_RE = re.compile(r'"token":\s*"([A-Za-z0-9_\-.]+)"')
HEADERS = [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")]



@pytest.mark.parametrize("handler_class", [ASGIHandler, BokehASGIHandler], ids=["django", "bokehserve"])
async def test_the_page_and_its_websocket_work_through_either_handler(fresh_runtime, handler_class: Any) -> None:
    application = bokeh_asgi_application(handler_class())
    page = HttpCommunicator(application, "GET", "/echo", headers=HEADERS)
    response = await page.get_response(timeout=TIMEOUT)
    await page.wait(TIMEOUT)
    assert response["status"] == 200
    match = TOKEN_RE.search(response["body"].decode("utf-8"))
    assert match, "no session token in the page"
    [session] = runtime.app("echo").sessions  # the page created it

    socket = WebsocketCommunicator(application, "/echo/ws", headers=HEADERS, subprotocols=["bokeh", match.group(1)])
    try:
        connected, subprotocol = await socket.connect(timeout=TIMEOUT)
        assert connected and subprotocol == "bokeh"
        header = await socket.receive_from(TIMEOUT)
        assert '"msgtype":"ACK"' in header.replace(" ", "")
        assert session.connection_count == 1
    finally:
        await socket.disconnect()

"""The send-frames ASGI extension: a whole Bokeh message in one send (protocol.SEND_FRAMES_EXTENSION).

BokehDaphneServer offers it in every WebSocket scope; the consumer then sends each message's
frames as one ASGI message, and BokehWebSocketProtocol writes them back to back. Without the
extension (any other ASGI server, Channels' communicator) the consumer sends one
``websocket.send`` per frame.
"""

from __future__ import annotations

import json

from channels.testing import WebsocketCommunicator

from bokehserve_django.protocol import SEND_FRAMES_EXTENSION
from tests.asgi import application
from tests.bokeh_client import make_token
from tests.integration.test_protocol_communicator import HEADERS, TIMEOUT


def communicator(extensions: dict | None) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, "/echo/ws", headers=HEADERS, subprotocols=["bokeh", make_token()])
    if extensions is not None:
        ws.scope["extensions"] = extensions
    return ws


async def test_with_the_extension_a_message_is_one_send(fresh_runtime):
    ws = communicator({SEND_FRAMES_EXTENSION: {}})
    try:
        connected, _ = await ws.connect(timeout=TIMEOUT)
        assert connected
        ack = await ws.receive_output(TIMEOUT)
        assert ack["type"] == SEND_FRAMES_EXTENSION
        header, metadata, content = ack["frames"]
        assert json.loads(header)["msgtype"] == "ACK" and (metadata, content) == ("{}", "{}")
    finally:
        await ws.disconnect()


async def test_without_it_every_frame_is_a_websocket_send(fresh_runtime):
    ws = communicator(None)
    try:
        connected, _ = await ws.connect(timeout=TIMEOUT)
        assert connected
        frames = [await ws.receive_output(TIMEOUT) for _ in range(3)]
        assert [f["type"] for f in frames] == ["websocket.send"] * 3
        assert json.loads(frames[0]["text"])["msgtype"] == "ACK"
    finally:
        await ws.disconnect()

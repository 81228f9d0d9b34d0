"""A raw Bokeh protocol client over `websockets`, for tests that need frame-level control."""

from __future__ import annotations

import json
from typing import Any

import websockets
from bokeh.protocol import Protocol
from bokeh.util.token import generate_jwt_token, generate_session_id

PROTOCOL = Protocol()


def make_token(session_id: str | None = None, *, secret_key: bytes | None = None, signed: bool = False,
               expiration: int = 300, extra_payload: dict | None = None) -> str:
    session_id = session_id or generate_session_id(secret_key=secret_key, signed=signed)
    return generate_jwt_token(session_id, secret_key=secret_key, signed=signed, expiration=expiration,
                              extra_payload=extra_payload)


def frames_of(message) -> list[str | bytes]:
    frames: list[str | bytes] = [message.header_json, message.metadata_json, message.content_json]
    for buffer in message.buffers:
        frames += [json.dumps(buffer.ref), buffer.to_bytes()]
    return frames


class RawBokehClient:
    """Connects with ["bokeh", token]; sends and receives whole Bokeh messages or raw frames."""

    def __init__(self, ws) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, ws_url: str, token: str, **kwargs: Any) -> RawBokehClient:
        ws = await websockets.connect(ws_url, subprotocols=["bokeh", token], max_size=None, **kwargs)
        return cls(ws)

    async def send(self, message) -> None:
        for frame in frames_of(message):
            await self.ws.send(frame)

    async def send_frames(self, *frames: str | bytes) -> None:
        for frame in frames:
            await self.ws.send(frame)

    async def recv(self):
        """The next complete message (header, metadata, content, then buffer pairs)."""
        header_json = await self.ws.recv()
        metadata_json = await self.ws.recv()
        content_json = await self.ws.recv()
        message = PROTOCOL.assemble(header_json, metadata_json, content_json)
        for _ in range(json.loads(header_json).get("num_buffers", 0)):
            buffer_header = json.loads(await self.ws.recv())
            payload = await self.ws.recv()
            message.assemble_buffer(buffer_header, payload)
        return message

    async def recv_type(self, msgtype: str, limit: int = 50):
        """Skip messages until one of ``msgtype`` arrives."""
        for _ in range(limit):
            message = await self.recv()
            if message.msgtype == msgtype:
                return message
        raise AssertionError(f"no {msgtype} within {limit} messages")

    async def close(self) -> None:
        await self.ws.close()

"""BokehConsumer hands frames to its handler without Channels' per-message thread hop."""

from __future__ import annotations

import channels.consumer

from bokehserve_django.consumers import BokehConsumer


class Recording(BokehConsumer):
    def __init__(self) -> None:
        self.handled: list[str] = []

    async def websocket_receive(self, event):
        self.handled.append(event["type"])

    async def websocket_disconnect(self, event):
        self.handled.append(event["type"])


async def test_frames_skip_the_database_cleanup_and_the_rest_keep_it(monkeypatch) -> None:
    cleanups: list[str] = []

    async def record_cleanup() -> None:
        cleanups.append("closed old connections")

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", record_cleanup)
    consumer = Recording()
    await consumer.dispatch({"type": "websocket.receive", "text": "{}"})
    await consumer.dispatch({"type": "websocket.receive", "bytes": b"\x00"})
    assert consumer.handled == ["websocket.receive", "websocket.receive"] and cleanups == []
    await consumer.dispatch({"type": "websocket.disconnect", "code": 1000})
    assert consumer.handled[-1] == "websocket.disconnect" and cleanups == ["closed old connections"]

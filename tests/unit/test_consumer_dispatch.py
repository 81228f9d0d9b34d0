"""BokehConsumer hands every message to its handler without Channels' per-message thread hop,
and the handshake's database queries close stale connections in their own thread instead."""

from __future__ import annotations

import channels.consumer
import channels.db
import pytest

from bokehserve_django import auth
from bokehserve_django.consumers import BokehConsumer


class Recording(BokehConsumer):
    def __init__(self) -> None:
        self.handled: list[str] = []

    async def websocket_connect(self, event):
        self.handled.append(event["type"])

    async def websocket_receive(self, event):
        self.handled.append(event["type"])

    async def websocket_disconnect(self, event):
        self.handled.append(event["type"])


async def test_no_message_waits_for_channels_database_cleanup(monkeypatch) -> None:
    cleanups: list[str] = []

    async def record_cleanup() -> None:
        cleanups.append("closed old connections")

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", record_cleanup)
    consumer = Recording()
    for message in (
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "{}"},
        {"type": "websocket.receive", "bytes": b"\x00"},
        {"type": "websocket.disconnect", "code": 1000},
    ):
        await consumer.dispatch(message)
    assert consumer.handled == ["websocket.connect", "websocket.receive", "websocket.receive", "websocket.disconnect"]
    assert cleanups == []


async def test_a_message_without_a_handler_is_an_error() -> None:
    with pytest.raises(ValueError, match="websocket.nonsense"):
        await Recording().dispatch({"type": "websocket.nonsense"})


async def test_the_token_users_lookup_closes_stale_connections_around_the_query(monkeypatch, settings) -> None:
    settings.BOKEHSERVE = {"SIGN_SESSIONS": True}
    calls: list[str] = []
    monkeypatch.setattr(channels.db, "close_old_connections", lambda: calls.append("close_old_connections"))
    monkeypatch.setattr(auth, "_active_user", lambda pk: calls.append(f"query {pk}"))
    user = await auth.user_for_websocket(None, {auth.TOKEN_USER_KEY: "7", auth.TOKEN_ISSUED_KEY: 0})
    assert calls == ["close_old_connections", "query 7", "close_old_connections"]
    assert not user.is_authenticated

"""The relay numbers frames both ways: re-deliveries are dropped, a gap closes the client."""

from __future__ import annotations

import pytest

from bokehserve_django.cluster import relay
from bokehserve_django.cluster.membership import cluster
from bokehserve_django.protocol import CloseCode


@pytest.fixture
def sent(monkeypatch):
    messages: list[tuple[str, dict]] = []

    async def fake_send(channel, message):
        messages.append((channel, message))

    monkeypatch.setattr(cluster, "send", fake_send)
    monkeypatch.setattr(cluster, "process_channel", "proc-a")
    return messages


async def test_owner_side_drops_repeats_and_closes_on_a_gap(sent) -> None:
    owners = relay.OwnerRelays()
    owned = relay._OwnedClient("echo")
    owners._clients["proc-b|edge"] = owned
    await owners._frame({"edge": "proc-b|edge", "seq": 1, "text": "header"})
    await owners._frame({"edge": "proc-b|edge", "seq": 1, "text": "header"})  # re-delivered
    await owners._frame({"edge": "proc-b|edge", "seq": 2, "bytes": b"\x00"})
    assert [owned.queue.get_nowait(), owned.queue.get_nowait()] == ["header", b"\x00"]
    await owners._frame({"edge": "proc-b|edge", "seq": 4, "text": "lost one"})
    assert "proc-b|edge" not in owners._clients
    channel, message = sent[-1]
    assert channel == "proc-b" and message["type"] == relay.CLOSE and message["code"] == CloseCode.OWNER_LOST


async def test_edge_side_drops_repeats_and_closes_on_a_gap(sent) -> None:
    class Consumer:
        def __init__(self) -> None:
            self.frames: list = []
            self.closed: tuple | None = None

        async def send_frames(self, frames) -> None:
            self.frames.extend(frames)

        async def close_connection(self, code, reason) -> None:
            self.closed = (code, reason)

    consumer = Consumer()
    edge = relay.EdgeRelay("proc-b", consumer)
    await edge.deliver({"seq": 1, "frames": ["a", "b", "c"]})
    await edge.deliver({"seq": 1, "frames": ["a", "b", "c"]})  # re-delivered
    assert consumer.frames == ["a", "b", "c"]
    await edge.deliver({"seq": 3, "frames": ["x"]})
    assert consumer.closed[0] == CloseCode.OWNER_LOST
    await edge.forward("frame")
    assert sent[-1][1]["seq"] == 1 and sent[-1][1]["edge"].startswith("proc-a|")

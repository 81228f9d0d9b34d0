"""The relay numbers messages both ways: re-deliveries are dropped, a gap closes the client.

And it sends one channel-layer message per Bokeh message, not one per frame.
"""

from __future__ import annotations

import asyncio

import pytest

from bokehserve_django.cluster import membership, relay
from bokehserve_django.protocol import CloseCode


@pytest.fixture
def sent(monkeypatch):
    messages: list[tuple[str, dict]] = []

    async def fake_send(channel, message):
        messages.append((channel, message))

    monkeypatch.setattr(membership, "send", fake_send)
    monkeypatch.setattr(membership, "process_channel", "proc-a")
    return messages


async def _sent_by_now() -> None:
    """Let the owner side's sender task (which never runs under the document lock) send."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_owner_side_sends_in_order_without_waiting_for_the_channel_layer(sent, monkeypatch) -> None:
    release = asyncio.Event()
    original = membership.send

    async def slow_send(channel, message):
        await release.wait()
        await original(channel, message)

    monkeypatch.setattr(membership, "send", slow_send)
    owned = relay._OwnedClient("proc-b|edge", "echo", lambda edge: None)
    for n in range(3):
        # Returns at once although the channel layer is stuck (bokeh awaits this under the lock).
        await asyncio.wait_for(owned.transport.send_frames([f"m{n}"]), 0.5)
    release.set()
    await _sent_by_now()
    assert [m["frames"] for _, m in sent] == [["m0"], ["m1"], ["m2"]]
    assert [m["seq"] for _, m in sent] == [1, 2, 3]


class Consumer:
    def __init__(self) -> None:
        self.frames: list = []
        self.closed: tuple | None = None

    async def send_frames(self, frames) -> None:
        self.frames.extend(frames)

    async def close_connection(self, code, reason) -> None:
        self.closed = (code, reason)


async def test_owner_side_drops_repeats_and_closes_on_a_gap(sent) -> None:
    owners = relay.OwnerRelays()
    owned = relay._OwnedClient("proc-b|edge", "echo", owners._forget)
    owners._clients["proc-b|edge"] = owned
    await owners._message({"edge": "proc-b|edge", "seq": 1, "frames": ["header", "meta", "content"]})
    await owners._message({"edge": "proc-b|edge", "seq": 1, "frames": ["header", "meta", "content"]})  # re-delivered
    await owners._message({"edge": "proc-b|edge", "seq": 2, "frames": ["h", "m", "c", '{"id": "1"}', b"\x00"]})
    assert [owned._queue.get_nowait(), owned._queue.get_nowait()] == [
        ["header", "meta", "content"], ["h", "m", "c", '{"id": "1"}', b"\x00"],
    ]
    await owners._message({"edge": "proc-b|edge", "seq": 4, "frames": ["lost one"]})
    assert "proc-b|edge" not in owners._clients
    await _sent_by_now()
    channel, message = sent[-1]
    assert channel == "proc-b" and message["type"] == relay.CLOSE and message["code"] == CloseCode.RELAY_INTERRUPTED


async def test_owner_side_closes_a_client_too_far_behind(sent, monkeypatch) -> None:
    monkeypatch.setattr(relay, "OWNER_QUEUE_LIMIT", 2)
    owners = relay.OwnerRelays()
    owned = relay._OwnedClient("proc-b|edge", "echo", owners._forget)
    owners._clients["proc-b|edge"] = owned
    for seq in (1, 2, 3):
        await owners._message({"edge": "proc-b|edge", "seq": seq, "frames": ["x"]})
    assert owned._queue.qsize() == 3  # two messages, then the end marker
    await _sent_by_now()
    assert sent[-1][1]["type"] == relay.CLOSE and sent[-1][1]["code"] == CloseCode.MESSAGE_TOO_BIG
    assert "proc-b|edge" not in owners._clients


async def test_edge_side_drops_repeats_and_closes_on_a_gap(sent) -> None:
    consumer = Consumer()
    edge = relay.EdgeRelay("proc-b", consumer)
    await edge.deliver({"seq": 1, "frames": ["a", "b", "c"]})
    await edge.deliver({"seq": 1, "frames": ["a", "b", "c"]})  # re-delivered
    assert consumer.frames == ["a", "b", "c"]
    await edge.deliver({"seq": 3, "frames": ["x"]})
    assert consumer.closed[0] == CloseCode.RELAY_INTERRUPTED and consumer.closed[1]
    assert edge.ended and edge.edge_channel not in relay._edges


async def test_edge_sends_one_layer_message_per_bokeh_message(sent) -> None:
    edge = relay.EdgeRelay("proc-b", Consumer())
    for frame in ['{"msgid": "1", "msgtype": "PATCH-DOC", "num_buffers": 1}', "{}", '{"events": []}', '{"id": "p1"}']:
        await edge.forward(frame)
    assert sent == []
    await edge.forward(b"\x01\x02")
    await edge.forward('{"msgid": "2", "msgtype": "PULL-DOC-REQ"}')
    await edge.forward("{}")
    await edge.forward("{}")
    assert [m["seq"] for _, m in sent] == [1, 2]
    assert sent[0][1]["frames"][-1] == b"\x01\x02" and len(sent[0][1]["frames"]) == 5
    assert len(sent[1][1]["frames"]) == 3
    assert {channel for channel, _ in sent} == {"proc-b"}


async def test_edge_passes_a_bad_header_on_alone_for_the_owner_to_refuse(sent) -> None:
    edge = relay.EdgeRelay("proc-b", Consumer())
    await edge.forward("not json")
    await edge.forward('{"msgid": "1", "msgtype": "PATCH-DOC", "num_buffers": -3}')
    assert [m["frames"] for _, m in sent] == [["not json"], ['{"msgid": "1", "msgtype": "PATCH-DOC", "num_buffers": -3}']]


async def test_watch_ends_relays_whose_other_process_is_dead(sent, monkeypatch) -> None:
    async def alive_map(channels):
        return {channel: channel != "proc-dead" for channel in channels}

    monkeypatch.setattr(membership, "alive_map", alive_map)
    monkeypatch.setattr(membership, "connected", True)
    owners = relay.OwnerRelays()
    to_dead, to_live = Consumer(), Consumer()
    dead_edge = relay.EdgeRelay("proc-dead", to_dead)
    live_edge = relay.EdgeRelay("proc-live", to_live)
    owned_by_dead = relay._OwnedClient("proc-dead|x", "echo", owners._forget)
    owners._clients["proc-dead|x"] = owned_by_dead
    await owners.check_other_ends()
    assert to_dead.closed[0] == CloseCode.OWNER_LOST and to_live.closed is None
    assert "proc-dead|x" not in owners._clients
    await live_edge.closed()
    await asyncio.sleep(0)
    assert dead_edge.ended


async def test_a_page_request_to_a_dead_owner_answers_503_at_the_next_watch(sent, monkeypatch) -> None:
    async def alive_map(channels):
        return dict.fromkeys(channels, False)

    monkeypatch.setattr(membership, "alive_map", alive_map)
    asking = asyncio.ensure_future(relay.request_page("proc-dead", "echo", "sid", "token"))
    await _sent_by_now()
    assert sent[-1][1]["type"] == relay.RENDER_PAGE
    await relay.OwnerRelays().check_other_ends()
    status, html = await asyncio.wait_for(asking, 1)
    assert status == 503 and "went away" in html
    assert relay._pending_pages == {}

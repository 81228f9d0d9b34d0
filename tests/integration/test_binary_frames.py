"""8 MB binary updates through the server's send path (header and payload written unjoined, wire.py).

Against a real runbokeh process: the payload arrives byte-exact and in order when the
client is slow to read (so the kernel takes it in many partial sends) and when messages
queue behind it, and with permessage-deflate, where frames take autobahn's own path.
"""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest

from tests.integration.test_protocol_live import BIG, TIMEOUT, Peer, connect, model, round_trip, set_text
from tests.live import LiveServer


@pytest.fixture(scope="module")
def compressing_server():
    """A runbokeh process that accepts permessage-deflate."""
    live = LiveServer("--websocket-compression-level", "1")
    yield live
    live.stop()


@contextlib.asynccontextmanager
async def opened(server: LiveServer, **kwargs):
    peer = await connect(server, **kwargs)
    try:
        await peer.pull()
        yield peer
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(peer.close(), 5)


def apply_patches(peer: Peer, messages: list) -> None:
    for message in messages:
        if message.msgtype == "PATCH-DOC":
            message.apply_to_document(peer.doc)


def sent_x(peer: Peer) -> np.ndarray:
    return np.asarray(model(peer.doc, "source").data["x"])


async def test_a_slow_reader_gets_the_8_mb_and_what_follows_in_order(server):
    async with opened(server) as peer:
        # Ask for the 8 MB, then for three small changes, without reading anything: the
        # server's socket buffer fills, so the payload goes out in many partial sends and
        # the later messages queue behind it.
        patches = [peer.patch(set_text("send-big"))] + [peer.patch(set_text(f"after-{i}")) for i in range(3)]
        for patch in patches:
            await peer.send(patch)
        await asyncio.sleep(1.0)
        output_id = model(peer.doc, "output").id
        texts, oks = [], []
        while len(oks) < len(patches):
            message = await peer.recv()
            if message.msgtype == "OK":
                oks.append(message.header["reqid"])
            elif message.msgtype == "PATCH-DOC":
                message.apply_to_document(peer.doc)
                texts += [
                    e["new"] for e in message.content["events"]
                    if e.get("attr") == "text" and e["model"]["id"] == output_id
                ]
        assert oks == [p.header["msgid"] for p in patches]
        assert texts == ["SEND-BIG", "AFTER-0", "AFTER-1", "AFTER-2"]
        np.testing.assert_array_equal(sent_x(peer), np.arange(BIG, dtype=np.float64))
        await round_trip(peer, "still in step")


async def test_8_mb_both_ways_with_permessage_deflate(compressing_server):
    async with opened(compressing_server, compression="deflate") as peer:
        assert "permessage-deflate" in peer.ws.response.headers.get("Sec-WebSocket-Extensions", "")
        await peer.send(peer.patch(set_text("send-big")))
        _, before = await peer.recv_until("OK")
        apply_patches(peer, before)
        np.testing.assert_array_equal(sent_x(peer), np.arange(BIG, dtype=np.float64))

        values = np.random.default_rng(12).random(BIG)

        def upload(doc) -> None:
            model(doc, "source").data = {"x": values}

        await peer.send(peer.patch(upload))
        _, before = await asyncio.wait_for(peer.recv_until("OK"), TIMEOUT)
        apply_patches(peer, before)
        assert model(peer.doc, "received").text == f"{BIG}:{float(values.sum())}"
        await round_trip(peer, "compressed")


async def test_many_sessions_get_their_own_8_mb_at_once(server):
    async with contextlib.AsyncExitStack() as stack:
        peers = [await stack.enter_async_context(opened(server)) for _ in range(3)]
        for peer in peers:
            await peer.send(peer.patch(set_text("send-big")))
        results = await asyncio.gather(*(peer.recv_until("OK") for peer in peers))
        for peer, (_, before) in zip(peers, results, strict=True):
            apply_patches(peer, before)
            np.testing.assert_array_equal(sent_x(peer), np.arange(BIG, dtype=np.float64))

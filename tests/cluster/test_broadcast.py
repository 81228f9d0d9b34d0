"""Broadcast from Django code reaches the subscribed sessions in every process.

tests/cluster/apps/broadcast.py subscribes to the "cluster-test" topic and appends each
payload's text to its Div "events"; its Div "pid" names the owning process.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.cluster.helpers import close_all, connect, fresh_token, http_post, json_of, model

pytestmark = pytest.mark.redis


async def _sessions(cluster):
    """Broadcast-app sessions: local on A, local on B, and one owned by A with a client relayed from B."""
    on_a = await connect(cluster.a.url, fresh_token(), app="broadcast")
    on_b = await connect(cluster.b.url, fresh_token(), app="broadcast")
    token = fresh_token()
    owner_side = await connect(cluster.a.url, token, app="broadcast")
    relayed = await connect(cluster.b.url, token, app="broadcast")
    peers = [on_a, on_b, owner_side, relayed]
    for peer in peers:
        await peer.pull()
    assert model(on_a.doc, "pid").text == str(cluster.a.process.pid)
    assert model(on_b.doc, "pid").text == str(cluster.b.process.pid)
    assert model(relayed.doc, "pid").text == str(cluster.a.process.pid)
    return peers


async def _expect_events(peers, text: str) -> None:
    await asyncio.gather(
        *(peer.wait_model("events", "text", lambda value: text in value, seconds=10) for peer in peers)
    )


async def test_broadcast_from_the_test_process_reaches_both_processes(cluster, cluster_layer) -> None:
    from bokehserve_django import broadcast

    peers = await _sessions(cluster)
    try:
        text = f"from-test-{uuid.uuid4().hex[:6]}"
        await broadcast.asend("cluster-test", {"text": text}, app="broadcast")
        await _expect_events(peers, text)

        # app= filters: an event for another app reaches none of these sessions.
        await broadcast.asend("cluster-test", {"text": "not-for-you"}, app="echo")
        marker = f"marker-{uuid.uuid4().hex[:6]}"
        await broadcast.asend("cluster-test", {"text": marker})  # app=None: every app
        await _expect_events(peers, marker)
        for peer in peers:
            assert "not-for-you" not in model(peer.doc, "events").text
    finally:
        await close_all(peers)


async def test_broadcast_from_a_django_view_reaches_both_processes(cluster) -> None:
    """A sync Django view (tests/cluster/urls.py) calls broadcast.send; nginx picks the process."""
    peers = await _sessions(cluster)
    try:
        senders: set[int] = set()
        pids = {cluster.a.process.pid, cluster.b.process.pid}
        for i in range(8):  # round robin: until a view in each process has broadcast
            if senders == pids:
                break
            text = f"from-view-{i}-{uuid.uuid4().hex[:6]}"
            status, body = await asyncio.to_thread(
                http_post,
                cluster.nginx.url + "/cluster-test/broadcast",
                {"topic": "cluster-test", "text": text, "app": "broadcast"},
            )
            assert status == 200, body
            senders.add(json_of(body)["pid"])
            await _expect_events(peers, text)
        assert senders == pids, f"views answered only by {senders}"
    finally:
        await close_all(peers)

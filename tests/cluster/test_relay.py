"""The relay between processes: big binary messages both ways, order, idle connections, and
exactly-once session creation when two processes see a new session id at the same moment.

A session is owned by the process that created it; a client connected to the other process
(the edge) is relayed to the owner over the Redis channel layer.
"""

from __future__ import annotations

import asyncio
import re
import time

import numpy as np
import pytest
from bokeh.util.token import generate_session_id, get_session_id

from tests.cluster.helpers import (
    PROTOCOL,
    close_all,
    connect,
    describe,
    fresh_token,
    http_get,
    model,
    opened_locally,
    relayed,
    token_in_page,
)

pytestmark = pytest.mark.redis

BIG = 1_000_000  # float64 values: 8 MB


async def owned_by_a_relayed_from_b(cluster, app: str = "echo"):
    """A session created on A (a client there first), and a second client on B, relayed to A."""
    token = fresh_token()
    on_a = await connect(cluster.a.url, token, app=app)
    on_b = await connect(cluster.b.url, token, app=app)
    session_id = get_session_id(token)
    assert opened_locally(cluster.a, session_id, app)
    assert relayed(cluster.b, session_id, app), describe(cluster.a, cluster.b)
    return token, session_id, on_a, on_b


def test_process_channel_is_received_with_the_connections_channels(cluster) -> None:
    """channels_redis receives every process-local ("!") channel of a layer through one shared
    BZPOPMIN on "<prefix>.<client id>!", where <prefix> is the one of new_channel(prefix). A
    process channel made with another prefix than the consumers' ("specific") is only read
    while its receiver holds the layer's receive lock, and then nothing else is read:
    relayed frames wait for a 5 s poll timeout, or for ever once socket_timeout allows it."""
    for server in (cluster.a, cluster.b):
        found = re.search(r"Process \d+ on channel (\S+) ", server.log)
        assert found, server.log[-2000:]
        channel = found.group(1)
        assert channel.startswith("specific."), (
            f"the process channel {channel!r} does not share the consumers' receive "
            "(bokehserve_django/cluster.py: new_channel('bokehserve.process'); use new_channel())"
        )


async def test_8mb_binary_update_both_ways_through_the_relay(cluster) -> None:
    _, _, on_a, on_b = await owned_by_a_relayed_from_b(cluster)
    try:
        await on_b.pull()
        # Client (on B) -> owner (A): one 8 MB binary buffer.
        values = np.random.default_rng(7).random(BIG)
        started = time.monotonic()
        before = await on_b.send_patch(
            lambda doc: setattr(model(doc, "source"), "data", {"x": values}), seconds=30
        )
        up = time.monotonic() - started
        received = model(on_b.doc, "received").text
        assert received == f"{BIG}:{float(values.sum())}", (received, [m.msgtype for m in before])

        # Owner (A) -> client (on B): "send-big" makes the server send an 8 MB array.
        started = time.monotonic()
        before = await on_b.send_patch(
            lambda doc: setattr(model(doc, "text_input"), "value", "send-big"), seconds=30
        )
        down = time.monotonic() - started
        big = [m for m in before if m.msgtype == "PATCH-DOC" and m.buffers]
        assert [len(b.to_bytes()) for m in big for b in m.buffers] == [8 * BIG], [m.msgtype for m in before]
        x = np.asarray(model(on_b.doc, "source").data["x"])
        assert x.dtype == np.float64
        np.testing.assert_array_equal(x, np.arange(BIG, dtype=np.float64))
        assert model(on_b.doc, "output").text == "SEND-BIG"
        await on_b.round_trip("after big")  # the relay still works
        await on_a.pull(limit=50)  # the client on the owner saw it all too
        assert model(on_a.doc, "output").text == "AFTER BIG"
        print(
            f"\n8 MB through the relay: client->owner {up * 1000:.0f} ms, owner->client {down * 1000:.0f} ms"
        )
    finally:
        await close_all([on_a, on_b])


async def test_relay_keeps_order(cluster) -> None:
    """Many messages sent back to back through the relay are answered in order."""
    _, _, on_a, on_b = await owned_by_a_relayed_from_b(cluster)
    try:
        await on_b.pull()
        patches = [
            on_b.patch(lambda doc, i=i: setattr(model(doc, "text_input"), "value", f"v{i}"))
            for i in range(60)
        ]
        for patch in patches:
            await on_b.send(patch)
        oks, outputs = [], []
        while len(oks) < len(patches):
            message = await on_b.recv()
            if message.msgtype == "OK":
                oks.append(message.header["reqid"])
            elif message.msgtype == "PATCH-DOC":
                message.apply_to_document(on_b.doc)
                outputs.append(model(on_b.doc, "output").text)
            else:
                raise AssertionError(f"unexpected {message.msgtype}: {message.content}")
        assert oks == [p.header["msgid"] for p in patches], "OKs came back out of order"
        assert outputs == [f"V{i}" for i in range(60)], outputs
        await on_a.pull(limit=500)  # on_a got every change first
        assert model(on_a.doc, "output").text == "V59"
    finally:
        await close_all([on_a, on_b])


async def test_idle_connections_survive(cluster) -> None:
    """Quiet connections (local and relayed) outlive the channel layer's 5 s blocking receive.

    With redis-py >= 8 and no socket_timeout in the channels_redis host config, the
    receive times out after 5 s and daphne closes idle WebSockets with 1011.
    """
    _, _, on_a, on_b = await owned_by_a_relayed_from_b(cluster)
    other = await connect(cluster.b.url, fresh_token())  # local on B
    try:
        for peer, text in ((on_a, "a"), (on_b, "b"), (other, "other")):
            await peer.round_trip(f"before {text}")
        await asyncio.sleep(12)
        for peer, text in ((on_a, "a"), (on_b, "b"), (other, "other")):
            await peer.round_trip(f"after {text}")
    finally:
        await close_all([on_a, on_b, other])


@pytest.mark.parametrize(
    ("app", "event", "rounds"),
    [
        ("hooks", "on_session_created", 12),
        ("slow", "slow_created", 3),  # app code takes 0.5 s: the loser's OPEN arrives mid-creation
    ],
)
async def test_new_session_created_once_when_both_processes_race(cluster, app, event, rounds) -> None:
    """The same fresh token on A and B at the same moment: one process creates, the other relays."""
    session_ids = []
    for _ in range(rounds):
        token = fresh_token()
        first, second = await asyncio.gather(
            connect(cluster.a.url, token, app=app), connect(cluster.b.url, token, app=app)
        )
        try:
            docs = await asyncio.gather(first.pull(), second.pull())
            roots = {root.name for doc in docs for root in doc.roots}
            assert roots == ({"info"} if app == "hooks" else {"pid"}), roots
            session_ids.append(get_session_id(token))
        finally:
            await close_all([first, second])
    created = cluster.hook_log.created(event)
    wrong = {sid: created[sid] for sid in session_ids if created[sid] != 1}
    assert not wrong, f"app code runs per raced session (want exactly 1): {wrong}"
    for sid in session_ids:
        paths = [(opened_locally(s, sid, app), relayed(s, sid, app)) for s in (cluster.a, cluster.b)]
        assert sorted(paths) == [(False, True), (True, False)], (sid, paths)


@pytest.mark.parametrize(
    ("app", "event", "rounds"), [("hooks", "on_session_created", 8), ("slow", "slow_created", 3)]
)
async def test_page_requests_race_for_the_same_new_session(cluster, app, event, rounds) -> None:
    """?bokeh-session-id=<new id> on A and B at once: one creation; both pages carry that session.

    The process that lost the claim asks the owner to render the page; the owner must wait for
    the creation in progress rather than answer "no such session"."""
    session_ids = []
    for _ in range(rounds):
        session_id = generate_session_id(secret_key=None, signed=False)
        pages = await asyncio.gather(
            *(
                asyncio.to_thread(http_get, f"{server.url}/{app}?bokeh-session-id={session_id}")
                for server in (cluster.a, cluster.b)
            )
        )
        for status, _, html in pages:
            assert status == 200, f"{status}: {html[:300]}"
            assert get_session_id(token_in_page(html)) == session_id
        session_ids.append(session_id)
    created = cluster.hook_log.created(event)
    wrong = {sid: created[sid] for sid in session_ids if created[sid] != 1}
    assert not wrong, f"app code runs per raced session (want exactly 1): {wrong}"


async def test_server_info_through_the_relay(cluster) -> None:
    _, _, on_a, on_b = await owned_by_a_relayed_from_b(cluster)
    try:
        request = PROTOCOL.create("SERVER-INFO-REQ")
        await on_b.send(request)
        reply, _ = await on_b.recv_until("SERVER-INFO-REPLY")
        assert reply.header["reqid"] == request.header["msgid"]
    finally:
        await close_all([on_a, on_b])

"""kill -9 the process owning a session while a relayed client uses it.

A third process C joins the shared cluster for this test (A and B stay up for other tests).
The client of C's session connected through A must get a close with code 4005 and a reason
within a few seconds; sessions owned by A and B keep working; new page loads work; a
reconnect with the dead session's token gets a fresh session.
"""

from __future__ import annotations

import os
import signal

import pytest
from bokeh.util.token import get_session_id

from tests.cluster.conftest import SETTINGS
from tests.cluster.helpers import close_all, connect, describe, fresh_token, load_page, model, relayed
from tests.live import LiveServer

pytestmark = pytest.mark.redis

#: The owner's liveness key lives 4 s (cluster.ALIVE_TTL) and edges check every second.
CLOSE_WITHIN = 8.0


async def test_kill_owner_closes_relayed_clients_with_a_reason(cluster) -> None:
    victim = LiveServer(settings=SETTINGS, env=cluster.env)
    peers = []
    try:
        # A session owned by C, used through A (relayed), and one client on C itself.
        token_c = fresh_token()
        on_c = await connect(victim.url, token_c)
        through_a = await connect(cluster.a.url, token_c)
        peers += [on_c, through_a]
        dead_id = get_session_id(token_c)
        assert relayed(cluster.a, dead_id, "echo"), describe(cluster.a)
        await through_a.round_trip("before the kill")

        # Sessions owned by the survivors: on A with a client relayed from B, and one local on B.
        token_a = fresh_token()
        on_a = await connect(cluster.a.url, token_a)
        from_b = await connect(cluster.b.url, token_a)
        local_b = await connect(cluster.b.url, fresh_token())
        peers += [on_a, from_b, local_b]
        for peer, text in ((on_a, "a"), (from_b, "b"), (local_b, "local b")):
            await peer.round_trip(f"before {text}")

        # Mid-use: a change is on its way to the owner when it dies.
        await through_a.send(
            through_a.patch(lambda doc: setattr(model(doc, "text_input"), "value", "in flight"))
        )
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait(10)
        code, reason, took = await through_a.close_info(seconds=CLOSE_WITHIN + 7)
        assert code == 4005 and reason, (
            f"relayed client of the dead owner: close code {code!r}, reason {reason!r} after {took:.1f} s\n"
            f"{describe(cluster.a)}"
        )
        assert took <= CLOSE_WITHIN, f"closed only after {took:.1f} s (reason {reason!r})"
        print(f"\nrelayed client closed {took:.1f} s after kill -9 of its owner: {code} {reason!r}")

        # The dead process's liveness record is gone; the survivors' are there.
        alive = cluster.redis.command("KEYS", "bokehserve:alive:*").count(b"bokehserve:alive:")
        assert alive == 2, cluster.redis.command("KEYS", "bokehserve:alive:*")

        # Sessions owned by the survivors keep working, relayed ones included.
        for peer, text in ((on_a, "a"), (from_b, "b"), (local_b, "local b")):
            await peer.round_trip(f"after {text}")

        # A new page load through nginx works.
        token, _ = await load_page(cluster.nginx.url, "echo")
        fresh = await connect(cluster.nginx.url, token)
        peers.append(fresh)
        await fresh.round_trip("new page after the kill")

        # A reconnect with the dead session's token (what BokehJS does) gets a fresh session here.
        again = await connect(cluster.b.url, token_c)
        peers.append(again)
        doc = await again.pull()
        assert model(doc, "text_input").value == "", "the reconnect got state of the dead session?"
        await again.round_trip("reborn")
        assert not relayed(cluster.b, dead_id, "echo"), "the reconnect was relayed to a dead process"
    finally:
        await close_all(peers)
        victim.stop()

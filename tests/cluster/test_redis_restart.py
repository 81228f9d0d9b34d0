"""Redis stops and comes back (same port, no persistence: everything in it is lost).

This module runs its own redis-server and two runbokeh processes, so the shared cluster of
the other modules is not disturbed. One scenario runs once (``outage``) and records what
happened; each test checks one promise of the issue against that record:

- local sessions keep working while Redis is down and after it is back; nothing hangs;
- a new session asked for while Redis is down is served (locally) or refused, not left hanging;
- new sessions (page on one process, WebSocket relayed from the other) work again within
  seconds after Redis is back;
- broadcast reaches both processes again after the restart.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from tests.cluster.conftest import server_env, start_servers
from tests.cluster.helpers import (
    HookLog,
    RedisServer,
    close_all,
    connect,
    describe,
    fresh_token,
    load_page,
)

pytestmark = pytest.mark.redis

#: Seconds Redis stays down.
DOWN_FOR = 4.0
#: Seconds after Redis is back within which new sessions must work again.
RECOVER_WITHIN = 10.0
#: Seconds any one round trip or connection attempt may take before it counts as hanging.
HANG = 8.0


async def _attempt(coro, seconds: float = HANG) -> tuple[str, float, Any]:
    """("ok" | "timeout" | "error", seconds, detail) of one bounded attempt."""
    start = time.monotonic()
    try:
        result = await asyncio.wait_for(coro, seconds)
        return "ok", time.monotonic() - start, result
    except TimeoutError:
        return "timeout", time.monotonic() - start, None
    except Exception as exc:  # noqa: BLE001 (recorded, then checked by the tests)
        return "error", time.monotonic() - start, repr(exc)


async def _new_relayed_sessions(page_on, ws_on) -> list[str]:
    """A hooks page on one process and its WebSocket on the other, then the same for echo with a
    round trip; the session ids."""
    ids = []
    for app in ("hooks", "echo"):
        token, session_id = await load_page(page_on.url, app)
        peer = await connect(ws_on.url, token, app=app)
        try:
            await peer.pull()
            if app == "echo":
                await peer.round_trip("recovered")
        finally:
            await peer.close()
        ids.append(session_id)
    return ids


async def _relayed_pair(a, b, token: str):
    """A session owned by A with a client relayed from B; both clients."""
    owner_a = await connect(a.url, token)
    try:
        relayed_b = await connect(b.url, token)
    except BaseException:
        await close_all([owner_a])
        raise
    try:
        await owner_a.pull()
        await relayed_b.round_trip("before")
    except BaseException:
        await close_all([owner_a, relayed_b])
        raise
    return owner_a, relayed_b


async def _scenario(redis: RedisServer, a, b) -> dict[str, Any]:
    record: dict[str, Any] = {"local": [], "relayed_during": None, "relayed_after": None}
    local_a = await connect(a.url, fresh_token())
    local_b = await connect(b.url, fresh_token())
    listeners = [await connect(server.url, fresh_token(), app="broadcast") for server in (a, b)]
    peers = [local_a, local_b, *listeners]
    try:
        for peer in (local_a, local_b, *listeners):
            await peer.pull()
        outcome = await _attempt(_relayed_pair(a, b, fresh_token()))
        record["relayed_setup"] = outcome[:2] + (outcome[2] if outcome[0] != "ok" else None,)
        relayed_b = None
        if outcome[0] == "ok":
            peers += outcome[2]
            relayed_b = outcome[2][1]

        counter = iter(range(10**6))

        async def local_round_trips(phase: str) -> None:
            for name, peer in (("A", local_a), ("B", local_b)):
                outcome = await _attempt(peer.round_trip(f"{phase} {next(counter)}"))
                record["local"].append((phase, name, outcome[0], round(outcome[1], 2), outcome[2]))

        await local_round_trips("before")
        redis.stop()
        down_at = time.monotonic()
        await local_round_trips("down")
        outcome = await _attempt(connect(a.url, fresh_token()))
        record["new_during"] = outcome[:2] + (outcome[2] if outcome[0] != "ok" else None,)
        if outcome[0] == "ok":
            peers.append(outcome[2])
        if relayed_b is not None:
            record["relayed_during"] = await _attempt(relayed_b.round_trip("relayed while down"))
            record["relayed_close"] = (relayed_b.ws.close_code, relayed_b.ws.close_reason)
        while time.monotonic() - down_at < DOWN_FOR:
            await local_round_trips("down")
            await asyncio.sleep(0.5)

        redis.start()
        up_at = time.monotonic()
        await local_round_trips("up")
        recovered = None
        attempts = []
        record["hooks_sessions"] = []
        # New sessions right after the restart (before the processes' next heartbeat, as
        # well as later), each with its page on A and its WebSocket on B.
        while time.monotonic() - up_at < RECOVER_WITHIN + 5:
            outcome = await _attempt(_new_relayed_sessions(a, b), seconds=5)
            attempts.append(
                (outcome[0], round(time.monotonic() - up_at, 2), outcome[2] if outcome[0] != "ok" else None)
            )
            if outcome[0] == "ok":
                record["hooks_sessions"].append(outcome[2][0])
                if recovered is None:
                    recovered = time.monotonic() - up_at
                if len(record["hooks_sessions"]) >= 5 and time.monotonic() - up_at > 1.5:
                    break
            else:
                await asyncio.sleep(0.5)
        record["recovered_after"] = recovered
        record["recovery_attempts"] = attempts
        await local_round_trips("up")
        if relayed_b is None:
            pass
        elif not relayed_b.ws.close_code:
            record["relayed_after"] = await _attempt(relayed_b.round_trip("relayed after"))
        else:
            record["relayed_after"] = ("closed", 0, (relayed_b.ws.close_code, relayed_b.ws.close_reason))

        # Broadcast from this process once Redis is back.
        text = f"after-restart-{uuid.uuid4().hex[:6]}"
        from bokehserve_django import broadcast
        from tests.cluster.settings import channel_layers

        with override_settings(CHANNEL_LAYERS=channel_layers(redis.url)):
            await broadcast.asend("cluster-test", {"text": text}, app="broadcast")
            outcomes = await asyncio.gather(
                *(
                    _attempt(peer.wait_model("events", "text", lambda v: text in v, seconds=6), seconds=7)
                    for peer in listeners
                )
            )
        record["broadcast_after"] = [o[0] for o in outcomes]
    finally:
        await close_all(peers)
    return record


@pytest.fixture(scope="module")
def outage(tmp_path_factory, static_root, monkeypatch_module) -> Iterator[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("redis-restart")
    redis = RedisServer(directory / "redis")
    monkeypatch_module.setenv("REDIS_URL", redis.url)
    hook_log = HookLog(directory / "hooks.log")
    servers = []
    try:
        servers = start_servers(2, server_env(redis, hook_log, static_root))
        a, b = servers
        record = asyncio.run(asyncio.wait_for(_scenario(redis, a, b), 90))
        record["logs"] = describe(a, b, tail=6000)
        record["hook_log"] = hook_log
        yield record
    finally:
        for server in servers:
            server.stop()
        redis.stop()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_local_sessions_keep_working_while_redis_restarts(outage) -> None:
    bad = [entry for entry in outage["local"] if entry[2] != "ok"]
    assert not bad, (
        f"local round trips that failed (phase, process, outcome, s, detail): {bad}\n{outage['logs']}"
    )
    slowest = max(entry[3] for entry in outage["local"])
    assert slowest < 2, f"a local round trip took {slowest} s"


def test_sessions_right_after_redis_is_back_are_created_once(outage) -> None:
    """Right after the restart no liveness key exists yet: a live owner must not look dead
    (and have its new session taken over and created a second time by the other process)."""
    created = outage["hook_log"].created()
    wrong = {sid: created[sid] for sid in outage["hooks_sessions"] if created[sid] != 1}
    assert outage["hooks_sessions"] and not wrong, (
        f"on_session_created calls per session created after the restart (want exactly 1): {wrong} "
        f"(attempts at s after restart: {outage['recovery_attempts']})\n{outage['logs']}"
    )


def test_new_session_while_redis_is_down_is_closed_with_a_reason(outage) -> None:
    """Without Redis no process can tell who owns a new id: the WebSocket is closed at once with
    4009 and a reason (BokehJS retries), never left hanging or served twice."""
    outcome, seconds, detail = outage["new_during"]
    assert outcome != "timeout", (
        f"a new WebSocket hung for {seconds:.1f} s while Redis was down\n{outage['logs']}"
    )
    assert outcome == "error" and "code=4009" in detail and "Redis" in detail, (
        f"a new session while Redis was down: {outcome} after {seconds:.1f} s: {detail}"
    )


def _require_relay(outage) -> None:
    setup = outage["relayed_setup"]
    assert setup[0] == "ok", f"the relay did not work even before Redis went down: {setup}\n{outage['logs']}"


def test_relayed_client_during_outage_does_not_hang(outage) -> None:
    """A relayed client cannot reach its owner while Redis is down; it must not hang silently."""
    _require_relay(outage)
    outcome, seconds, _ = outage["relayed_during"]
    assert outcome != "timeout", (
        f"a relayed round trip while Redis was down hung for {seconds:.1f} s without a close\n{outage['logs']}"
    )
    after = outage["relayed_after"]
    assert after[0] in ("ok", "closed"), f"relayed client after the restart: {after}"


def test_relayed_client_cut_off_by_the_outage_gets_a_reason(outage) -> None:
    """If the relay cannot carry a client's frames, the client is closed with a 4xxx code and a
    reason (as for a dead owner), not with daphne's 1011 for an unhandled exception."""
    _require_relay(outage)
    outcome, _, detail = outage["relayed_during"]
    if outcome == "ok":
        return  # the relay coped (buffered, or Redis came back in time)
    code, reason = outage["relayed_close"]
    assert code is not None and 4000 <= code <= 4999 and reason, (
        f"relayed client closed with code {code!r}, reason {reason!r} while Redis was down ({detail})"
    )


def test_new_sessions_work_soon_after_redis_is_back(outage) -> None:
    recovered = outage["recovered_after"]
    assert recovered is not None and recovered <= RECOVER_WITHIN, (
        f"new relayed sessions after Redis came back: attempts {outage['recovery_attempts']}\n{outage['logs']}"
    )
    print(f"\nnew relayed sessions worked {recovered:.1f} s after Redis was back")


def test_broadcast_reaches_both_processes_after_redis_restart(outage) -> None:
    """Group memberships live in Redis: a Redis without persistence forgets them on restart,
    so each process must join the broadcast group again."""
    assert outage["broadcast_after"] == ["ok", "ok"], (
        f"broadcast after the restart reached (A, B): {outage['broadcast_after']}"
    )

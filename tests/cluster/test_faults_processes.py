"""Process faults with real processes: a stalled owner, a SIGKILLed edge, a SIGTERMed owner,
and a site that routes the Bokeh WebSockets with its own ProtocolTypeRouter.

What docs/cluster.md promises, checked end to end:

1. A callback that blocks the owner's event loop for 10 s (tests/cluster/apps/blocking.py)
   is a stall, not a death: the heartbeat thread keeps the owner alive, so the relayed
   client stays open, gets the callback's result afterwards, and nobody takes the session over.
2. When the edge of a relay is SIGKILLed, the owner drops the relayed client and reaps the
   session by the unused-session rules, releasing its owner record.
3. SIGTERM on an owner drains: every client (direct and relayed) gets a close frame with a
   code and a reason, on_session_destroyed runs, the records are released before the
   clients are closed, so reconnects land on a live process at once.
4. With the site's own router (tests/cluster/custom_asgi.py), relays, broadcasts from Django
   views and the SIGTERM hooks work as with ``bokeh_asgi_application``.

Processes that a test kills or stops are its own (started here, stopped by their PID); the
shared cluster (A, B) only ever serves.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
import websockets
from bokeh.util.token import get_session_id
from websockets.exceptions import ConnectionClosed

from bokehserve_django.cluster.membership import (
    ALIVE_TTL,
    HEARTBEAT_INTERVAL,
    PROCESSES_KEY,
    alive_key,
    owner_key,
)
from bokehserve_django.cluster.relay import WATCH_INTERVAL
from tests.cluster.conftest import SETTINGS, server_env
from tests.cluster.helpers import (
    INSECURE_TLS,
    TIMEOUT,
    HookLog,
    RedisServer,
    close_all,
    connect,
    describe,
    fresh_token,
    http_post,
    load_page,
    model,
    relayed,
    stop_process,
    wait_for_port,
    ws_url,
)
from tests.live import ROOT, LiveServer, free_port

pytestmark = pytest.mark.redis

CUSTOM_SETTINGS = "tests.cluster.custom_settings"

#: Seconds a SIGKILLed process may still look alive: its liveness key's TTL, one heartbeat
#: it may just have sent, and one pass of the relay watch.
DEATH_NOTICED_WITHIN = ALIVE_TTL + HEARTBEAT_INTERVAL + WATCH_INTERVAL


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def redis_client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=5, decode_responses=True)


def channel_of(client: redis.Redis, pid: int, timeout: float = 5) -> str:
    """The process channel of the runbokeh process ``pid`` (from the bokehserve:processes hash)."""
    deadline = time.monotonic() + timeout
    while True:
        for channel, raw in client.hgetall(PROCESSES_KEY).items():
            if json.loads(raw).get("pid") == pid:
                return channel
        if time.monotonic() > deadline:
            raise AssertionError(
                f"process {pid} has no entry in {PROCESSES_KEY}: {client.hgetall(PROCESSES_KEY)}"
            )
        time.sleep(0.1)


def start_side_by_side(*specs: tuple[tuple[str, ...], dict[str, Any]]) -> list[LiveServer]:
    """LiveServers (args, kwargs) started in parallel; the started ones are stopped if one fails."""
    with ThreadPoolExecutor(len(specs)) as pool:
        futures = [pool.submit(LiveServer, *args, **kwargs) for args, kwargs in specs]
    servers, errors = [], []
    for future in futures:
        try:
            servers.append(future.result())
        except (RuntimeError, OSError) as exc:
            errors.append(exc)
    if errors:
        for server in servers:
            server.stop()
        raise errors[0]
    return servers


async def wait_for(check, seconds: float, what: str, interval: float = 0.05) -> float:
    """Poll ``check()`` until true; the seconds it took. AssertionError after ``seconds``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"{what}: not within {seconds:.1f} s")
        await asyncio.sleep(interval)
    return time.monotonic() - start


async def closed_at_once(base_url: str, token: str, app: str) -> tuple[int | None, str | None, list[Any]]:
    """Open a WebSocket that the server accepts and closes: (code, reason, messages before it)."""
    url = ws_url(base_url, app)
    kwargs: dict[str, Any] = {"origin": base_url}
    if url.startswith("wss://"):
        kwargs["ssl"] = INSECURE_TLS
    ws = await websockets.connect(
        url, subprotocols=["bokeh", token], max_size=None, open_timeout=TIMEOUT, close_timeout=5, **kwargs
    )
    received = []
    try:
        async with asyncio.timeout(TIMEOUT):
            while True:
                received.append(await ws.recv())
    except ConnectionClosed:
        pass
    except TimeoutError:
        await ws.close()
        raise AssertionError(
            f"{url} kept the WebSocket open for {TIMEOUT} s; received {len(received)} frame(s)"
        ) from None
    return ws.close_code, ws.close_reason, received


def assert_no_errors(server: Any, since: int = 0) -> None:
    """No ERROR line or traceback in ``server``'s log (from character ``since`` on)."""
    log = server.log[since:]
    bad = [
        line
        for line in log.splitlines()
        if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")
    ]
    assert not bad, f"errors in the log of {server.url}:\n" + "\n".join(bad) + f"\n{log[-4000:]}"


def stop_by_pid(server: LiveServer) -> None:
    """SIGTERM, without waiting (LiveServer.stop waits)."""
    os.kill(server.process.pid, signal.SIGTERM)


# ---------------------------------------------------------------------------
# 1. A 10 s blocking callback on the owner while a relayed client is connected
# ---------------------------------------------------------------------------


async def test_owner_stall_of_10_s_is_not_a_death(cluster) -> None:
    owner, edge = cluster.a, cluster.b
    marks = {server: len(server.log) for server in (owner, edge)}
    client = redis_client(cluster.redis)
    owner_channel = channel_of(client, owner.process.pid)
    peers = []
    try:
        # The page on the owner (its session is created there), the WebSocket on the edge.
        token, session_id = await load_page(owner.url, "blocking")
        through_edge = await connect(edge.url, token, app="blocking")
        peers.append(through_edge)
        assert relayed(edge, session_id, "blocking"), describe(edge)
        doc = await through_edge.pull()
        assert model(doc, "pid").text == str(owner.process.pid)
        await through_edge.send_patch(
            lambda doc: setattr(model(doc, "state"), "value", "set before the stall")
        )
        key = owner_key("blocking", session_id)
        assert client.get(key) == owner_channel

        # While the owner's loop sleeps: its liveness key and its record stay, the edge answers.
        samples: list[tuple[float, bool, str | None, bool]] = []
        stop_watching = asyncio.Event()

        async def watch() -> None:
            while not stop_watching.is_set():
                alive = await asyncio.to_thread(client.exists, alive_key(owner_channel))
                record = await asyncio.to_thread(client.get, key)
                pong = True
                try:
                    await asyncio.wait_for(await through_edge.ws.ping(), 2)
                except (TimeoutError, ConnectionClosed):
                    pong = False
                samples.append((time.monotonic(), bool(alive), record, pong))
                await asyncio.sleep(0.25)

        watcher = asyncio.create_task(watch())
        started = time.monotonic()
        try:
            await through_edge.send_patch(
                lambda doc: setattr(model(doc, "trigger"), "value", "go"), seconds=30
            )
        except ConnectionClosed:
            raise AssertionError(
                f"the relayed client was closed during the stall: {through_edge.ws.close_code} "
                f"{through_edge.ws.close_reason!r} after {time.monotonic() - started:.1f} s\n{describe(owner, edge)}"
            ) from None
        finally:
            stop_watching.set()
            await watcher
        took = time.monotonic() - started
        # The OK comes after the callback: proof that the loop really was blocked for 10 s.
        assert took >= 9.5, f"the callback's OK came after {took:.1f} s: the owner's loop did not stall"
        result = await through_edge.wait_model("result", "text", lambda text: text.startswith("go: done"))
        print(f"\nowner stalled {took:.1f} s; relayed client kept, result {result!r}; {len(samples)} samples")

        stall = [s for s in samples if s[0] - started < took]
        assert len(stall) >= 10, f"only {len(stall)} samples during the stall"
        assert all(alive for _, alive, _, _ in stall), "the owner's liveness key lapsed during the stall"
        assert all(record == owner_channel for _, _, record, _ in stall), [s[2] for s in stall]
        assert all(pong for *_, pong in stall), "the edge stopped answering pings during the stall"

        # Still open a moment later (the relay watch has had its passes), state intact.
        await asyncio.sleep(2 * WATCH_INTERVAL)
        after = await through_edge.pull()
        assert model(after, "state").value == "set before the stall"
        assert model(after, "result").text == result
        await through_edge.send_patch(
            lambda doc: setattr(model(doc, "state"), "value", "set after the stall")
        )
        fresh = await through_edge.pull()
        assert model(fresh, "state").value == "set after the stall"
        assert model(fresh, "trigger").value == "go"
        assert model(fresh, "result").text == result

        # A second client, straight on the owner, sees the same document.
        on_owner = await connect(owner.url, token, app="blocking")
        peers.append(on_owner)
        other = await on_owner.pull()
        assert model(other, "result").text == result
        assert model(other, "pid").text == str(owner.process.pid)

        # One session: built once, stalled once, never taken over.
        assert cluster.hook_log.created("blocking_created")[session_id] == 1, (
            cluster.hook_log.path.read_text()
        )
        assert cluster.hook_log.created("blocking_stall_end")[session_id] == 1
        assert client.get(key) == owner_channel
        for server in (owner, edge):
            assert "Took over" not in server.log, describe(server)
            assert "missed its heartbeats" not in server.log, describe(server)
        assert "owner process of a relayed session is gone" not in edge.log, describe(edge)
        assert "is gone; dropping that client" not in owner.log, describe(owner)
        for server, mark in marks.items():
            assert_no_errors(server, mark)
    finally:
        await close_all(peers)
        client.close()


# ---------------------------------------------------------------------------
# 2. The edge is SIGKILLed
# ---------------------------------------------------------------------------

LIFETIME_MS, CHECK_MS = 2000, 500


async def test_edge_killed_owner_drops_client_and_reaps_session(cluster) -> None:
    env = cluster.env
    owner, edge = start_side_by_side(
        (
            ("--unused-session-lifetime", str(LIFETIME_MS), "--check-unused-sessions", str(CHECK_MS)),
            {"settings": SETTINGS, "env": env},
        ),
        ((), {"settings": SETTINGS, "env": env}),
    )
    client = redis_client(cluster.redis)
    hooks = cluster.hook_log
    peers = []
    try:
        owner_channel = channel_of(client, owner.process.pid)
        token, session_id = await load_page(owner.url, "hooks")
        through_edge = await connect(edge.url, token, app="hooks")
        peers.append(through_edge)
        await through_edge.pull()
        assert relayed(edge, session_id, "hooks"), describe(edge)
        key = owner_key("hooks", session_id)
        assert client.get(key) == owner_channel

        def destroyed() -> bool:
            return (owner.process.pid, session_id) in hooks.lines("on_session_destroyed")

        # The relayed client keeps the session in use past its unused lifetime.
        await asyncio.sleep((LIFETIME_MS + 2 * CHECK_MS) / 1000 + 1)
        assert not destroyed(), "the session was reaped while its relayed client was connected"

        os.kill(edge.process.pid, signal.SIGKILL)
        edge.process.wait(10)
        bound = DEATH_NOTICED_WITHIN + (LIFETIME_MS + CHECK_MS) / 1000 + 3
        took = await wait_for(
            destroyed,
            bound,
            f"on_session_destroyed of {session_id} after kill -9 of its edge\n{describe(owner)}",
        )
        print(f"\nsession reaped {took:.1f} s after kill -9 of the edge (bound {bound:.1f} s)")
        assert "is gone; dropping that client" in owner.log, describe(owner)
        # Released before on_session_destroyed ran.
        assert client.get(key) is None, f"owner record still {client.get(key)!r}"
        assert key not in client.smembers(f"bokehserve:owned:{owner_channel}")
        # The owner is fine: it serves new sessions.
        again = await connect(owner.url, fresh_token(), app="hooks")
        peers.append(again)
        await again.pull()
        assert_no_errors(owner)
    finally:
        await close_all(peers)
        client.close()
        owner.stop()
        edge.stop()


# ---------------------------------------------------------------------------
# 3. The owner gets SIGTERM
# ---------------------------------------------------------------------------

DRAIN_S = 2
#: Milliseconds Redis refuses writes around the end of the drain (less than REDIS_TIMEOUT).
PAUSE_MS = 1500


async def test_owner_sigterm_closes_every_client_and_hands_over(cluster) -> None:
    survivor = cluster.a
    mark = len(survivor.log)
    owner = LiveServer("--drain-timeout", str(DRAIN_S), settings=SETTINGS, env=cluster.env)
    client = redis_client(cluster.redis)
    hooks = cluster.hook_log
    peers = []
    try:
        # First (so that the owner destroys it first): a session with one direct client only,
        # whose close needs no Redis, for the check that records go before clients are closed.
        solo_token = fresh_token()
        solo = await connect(owner.url, solo_token, app="hooks")
        peers.append(solo)
        await solo.pull()
        solo_key = owner_key("hooks", get_session_id(solo_token))
        token, session_id = await load_page(owner.url, "hooks")
        direct = await connect(owner.url, token, app="hooks")
        through_survivor = await connect(survivor.url, token, app="hooks")
        peers += [direct, through_survivor]
        for peer in peers:
            await peer.pull()
        assert relayed(survivor, session_id, "hooks"), describe(survivor)
        key = owner_key("hooks", session_id)
        owner_channel = channel_of(client, owner.process.pid)
        assert client.get(key) == owner_channel

        async def close_then_record(peer, record_key):
            """The close frame, then the owner record as it is the moment that frame arrived."""
            code, reason, took = await peer.close_info(DRAIN_S + 15)
            return code, reason, took, await asyncio.to_thread(client.get, record_key)

        async def pause_redis_writes_as_the_drain_ends():
            # Redis takes no writes for PAUSE_MS around the end of the drain, so the owner's
            # release of its record is held up: a client closed before the release (the wrong
            # order) would see the record still there. Reads still work meanwhile.
            await asyncio.sleep(DRAIN_S - 0.3)
            await asyncio.to_thread(client.execute_command, "CLIENT", "PAUSE", str(PAUSE_MS), "WRITE")

        signalled = time.monotonic()
        stop_by_pid(owner)
        (
            (code_s, reason_s, _, record_s),
            (code_d, reason_d, took_d, record_d),
            (code_r, reason_r, took_r, record_r),
            _,
        ) = await asyncio.gather(
            close_then_record(solo, solo_key),
            close_then_record(direct, key),
            close_then_record(through_survivor, key),
            pause_redis_writes_as_the_drain_ends(),
        )
        closed = time.monotonic()
        print(
            f"\nSIGTERM: direct {code_d} {reason_d!r} after {took_d:.1f} s; "
            f"relayed {code_r} {reason_r!r} after {took_r:.1f} s"
        )
        assert code_d == 1001 and reason_d, f"direct client: {code_d!r} {reason_d!r}\n{describe(owner)}"
        assert code_r is not None and (code_r == 1001 or 4000 <= code_r <= 4999) and reason_r, (
            f"relayed client: {code_r!r} {reason_r!r}\n{describe(owner, survivor)}"
        )
        # The drain waited for the connected session, then closed it, within its bound.
        assert DRAIN_S - 0.5 <= min(took_d, took_r) and max(took_d, took_r) <= DRAIN_S + 5, (took_d, took_r)
        # Records are released before clients are closed.
        assert code_s == 1001 and reason_s, (code_s, reason_s)
        assert record_s is None and record_d is None and record_r is None, (
            f"an owner record was still there when its clients were closed: solo saw {record_s!r}, "
            f"direct saw {record_d!r}, relayed saw {record_r!r}"
        )

        # A new session opens on the survivor within a second: a page load, and a fresh token.
        new_token, new_id = await load_page(survivor.url, "hooks")
        on_survivor = await connect(survivor.url, new_token, app="hooks")
        peers.append(on_survivor)
        await on_survivor.pull()
        new_took = time.monotonic() - closed
        assert new_took <= 1.0, f"a new session took {new_took:.2f} s after the owner's clients were closed"
        assert not relayed(survivor, new_id, "hooks")
        fresh = await connect(survivor.url, fresh_token(), app="hooks")
        peers.append(fresh)
        await fresh.pull()
        print(f"new page session on the survivor {new_took:.2f} s after the close frames")

        # The old page token: gone (reload the page). A bokeh.client-style token for the
        # same id: a working session, created on the survivor.
        code, reason, frames = await closed_at_once(survivor.url, token, "hooks")
        assert code == 4010 and reason and not frames, (code, reason, frames)
        reborn = await connect(survivor.url, fresh_token(session_id=session_id), app="hooks")
        peers.append(reborn)
        doc = await reborn.pull()
        assert model(doc, "info").text.startswith("args=")
        assert client.get(key) == channel_of(client, survivor.process.pid)
        assert (survivor.process.pid, session_id) in hooks.lines("on_session_created")

        assert owner.process.wait(15) == 0, describe(owner)
        assert time.monotonic() - signalled < DRAIN_S + 10
        assert (owner.process.pid, session_id) in hooks.lines("on_session_destroyed"), hooks.path.read_text()
        assert (owner.process.pid, "-") in hooks.lines("on_server_unloaded")
        assert client.get(alive_key(owner_channel)) is None, "the stopped owner still looks alive"
        assert_no_errors(owner)
        assert_no_errors(survivor, mark)
    finally:
        await close_all(peers)
        client.close()
        owner.stop()


# ---------------------------------------------------------------------------
# 4. The site uses its own router
# ---------------------------------------------------------------------------


class DaphneModule:
    """``python -m bokehserve_django.daphne tests.cluster.custom_asgi:application`` on a free port.

    Unlike runbokeh, it starts nothing at start-up: Bokeh serving starts with the first
    request that needs it (lazily, from the views or the WebSocket consumer).
    """

    def __init__(self, env: dict[str, str], log_path: Path, *args: str, startup_timeout: float = 30) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "DJANGO_SETTINGS_MODULE": CUSTOM_SETTINGS, **env}
        full_env.pop("BOKEHSERVE_RUN_OVERRIDES", None)
        command = [
            sys.executable,
            "-m",
            "bokehserve_django.daphne",
            "tests.cluster.custom_asgi:application",
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            *args,
        ]
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_for_port(self.port, startup_timeout, self.process, "python -m bokehserve_django.daphne")
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n{self.log}") from None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        return stop_process(self.process, timeout=15)


async def test_site_router_relays_broadcasts_and_stops(tmp_path: Path) -> None:
    """Two processes on the site's own router: runbokeh, and the daphne module (lazy start)."""
    store = RedisServer(tmp_path / "redis")
    hooks = HookLog(tmp_path / "hooks.log")
    env = server_env(store, hooks, tmp_path / "static")
    peers = []
    first = second = None
    try:
        first = LiveServer("--drain-timeout", "1", settings=CUSTOM_SETTINGS, env=env)
        second = DaphneModule(env, tmp_path / "daphne.log", "--drain-timeout", "1")
        # The page on one process, its WebSocket on the other: one session, relayed. The
        # WebSocket is the first request the daphne module serves: the consumer starts it.
        token, session_id = await load_page(first.url, "hooks", "?a=1")
        assert " on channel " not in second.log, "the daphne module started Bokeh serving before any request"
        through_second = await connect(second.url, token, app="hooks")
        peers.append(through_second)
        doc = await through_second.pull()
        assert model(doc, "info").text.startswith("args=['a']")
        assert relayed(second, session_id, "hooks"), second.log[-3000:]
        assert hooks.created()[session_id] == 1
        assert [pid for pid, sid in hooks.lines("on_session_created") if sid == session_id] == [
            first.process.pid
        ]
        assert (second.process.pid, "-") in hooks.lines("on_server_loaded"), hooks.path.read_text()
        # And a session of its own on the daphne module, for its SIGTERM below.
        local_token = fresh_token()
        local = await connect(second.url, local_token, app="hooks")
        peers.append(local)
        await local.pull()
        assert not relayed(second, get_session_id(local_token), "hooks")

        # A broadcast from a Django view reaches sessions in both processes (and relayed ones).
        on_first = await connect(first.url, fresh_token(), app="broadcast")
        on_second = await connect(second.url, fresh_token(), app="broadcast")
        shared = fresh_token()
        owner_side = await connect(first.url, shared, app="broadcast")
        relayed_side = await connect(second.url, shared, app="broadcast")
        listeners = [on_first, on_second, owner_side, relayed_side]
        peers += listeners
        for peer in listeners:
            await peer.pull()
        assert model(on_first.doc, "pid").text == str(first.process.pid)
        assert model(on_second.doc, "pid").text == str(second.process.pid)
        assert model(relayed_side.doc, "pid").text == str(first.process.pid)
        text = f"view-{uuid.uuid4().hex[:6]}"
        status, body = await asyncio.to_thread(
            http_post, f"{second.url}/cluster-test/broadcast", {"topic": "cluster-test", "text": text}
        )
        assert status == 200, body
        await asyncio.gather(
            *(
                peer.wait_model("events", "text", lambda value: text in value, seconds=10)
                for peer in listeners
            )
        )

        # SIGTERM: on_session_destroyed for the live session, on_server_unloaded, exit 0.
        stop_by_pid(first)
        code, reason, _ = await through_second.close_info(15)
        assert code is not None and (code == 1001 or 4000 <= code <= 4999) and reason, (code, reason)
        assert first.process.wait(15) == 0, describe(first)
        assert (first.process.pid, session_id) in hooks.lines("on_session_destroyed"), hooks.path.read_text()
        assert (first.process.pid, "-") in hooks.lines("on_server_unloaded"), hooks.path.read_text()
        stop_by_pid(second)
        code, reason, _ = await local.close_info(15)
        assert code == 1001 and reason, (code, reason)
        assert second.process.wait(15) == 0, second.log[-3000:]
        assert (second.process.pid, get_session_id(local_token)) in hooks.lines("on_session_destroyed")
        assert (second.process.pid, "-") in hooks.lines("on_server_unloaded"), hooks.path.read_text()
        for server in (first, second):
            assert_no_errors(server)
    finally:
        await close_all(peers)
        for server in (first, second):
            if server is not None:
                server.stop()
        store.stop()

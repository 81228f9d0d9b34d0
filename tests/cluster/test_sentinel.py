"""The cluster behind a Redis Sentinel, with real processes: a master, a replica, one Sentinel,
and two runbokeh processes whose CHANNEL_LAYERS host is the documented Sentinel entry
(tests/cluster/sentinel_settings.py). Nothing of the shared ``cluster`` fixture is used; every
process here is started by this module and stopped by its PID.

Before the failover: a page on A and its WebSocket on B is relayed, round trips work, and the
owner and liveness records are on the master the Sentinel names. Then the master is SIGKILLed
(the host died); the Sentinel promotes the replica. Within RECOVER_WITHIN seconds of the kill
new sessions work again across processes; clients opened before the failover either keep
answering round trips or are closed with a 4xxx code and a reason, and reconnect with their
original token to their session, state intact; the records are on the new master; the app ran
once per session id.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py

import tests.cluster.test_faults_redis as faults
from bokehserve_django.cluster.membership import alive_key, owner_key
from tests.cluster.helpers import REDIS_SERVER, HookLog, describe, load_page, relayed, stop_process
from tests.cluster.test_faults_redis import (
    APP,
    APP_PATH,
    SILENT_AFTER,
    Client,
    _channel_of,
    _drive,
    _reconnect,
    _timed,
)
from tests.live import LiveServer, free_port

pytestmark = pytest.mark.redis

SETTINGS = "tests.cluster.sentinel_settings"
MASTER_NAME = "mymaster"
#: Sentinel timing: the master counts as down after DOWN_AFTER_MS without a reply.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
#: Seconds after the kill within which new sessions must work again, and closed clients be back.
RECOVER_WITHIN = 15.0
#: The failovers, in order: Sentinel's own (SENTINEL FAILOVER: the master is demoted to a
#: replica), then the new master's host dies (SIGKILL).
PHASES = ("failover", "kill")


def _require() -> None:
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip(f"{REDIS_SERVER} is not installed")


class Redis:
    """A redis-server (or Sentinel) on a free loopback port, without persistence."""

    def __init__(self, directory: Path, *args: str, sentinel_conf: str | None = None) -> None:
        self.port = free_port()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        if sentinel_conf is not None:
            conf = directory / "sentinel.conf"  # Sentinel rewrites it: a file of its own
            conf.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n{sentinel_conf}")
            command = [REDIS_SERVER, str(conf), "--sentinel"]
        else:
            command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                       "--appendonly", "no", "--dir", str(directory), *args]
        command += ["--daemonize", "no", "--loglevel", "notice"]
        with open(directory / "redis.log", "a") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.client = redis_py.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, decode_responses=True)
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {self.log}")
            with contextlib.suppress(redis_py.RedisError):
                if self.client.ping():
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer PING within 10 s: {self.log}")
            time.sleep(0.05)

    @property
    def log(self) -> str:
        return (self.directory / "redis.log").read_text(errors="replace")

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(5)

    def stop(self) -> None:
        self.client.close()
        stop_process(self.process)


def _wait(what: str, predicate, timeout: float) -> float:
    """Seconds until ``predicate()`` (bounded)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        with contextlib.suppress(redis_py.RedisError):
            if predicate():
                return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def _master_port(sentinel: Redis) -> int | None:
    reply = sentinel.client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
    return int(reply[1]) if reply else None


def _records(server: Redis, clients: list[Client], channels: dict[int, str | None]) -> dict[str, Any]:
    """Per client: (owner record on ``server``, owner's channel); and which alive keys exist there."""
    return {
        "owners": {
            c.name: (server.client.get(owner_key(APP, c.session_id)), channels[c.owner.process.pid])
            for c in clients
        },
        "alive": {pid: bool(server.client.exists(alive_key(ch))) for pid, ch in channels.items() if ch},
        "owner_keys": len(server.client.keys("bokehserve:owner:*")),
    }


#: Every session id a page of this module gave out (attempts that failed after the page too).
ASKED: set[str] = set()


async def _session_works(page_on: LiveServer, ws_on: LiveServer, text: str) -> dict[str, Any]:
    async def load(base_url: str, app: str) -> tuple[str, str]:
        token, session_id = await load_page(base_url, app)
        ASKED.add(session_id)
        return token, session_id

    original, faults.load_page = faults.load_page, load
    try:
        return await faults._session_works(page_on, ws_on, text)
    finally:
        faults.load_page = original


async def _scenario(servers: list[Redis], sentinel: Redis, a: LiveServer, b: LiveServer) -> dict[str, Any]:
    record: dict[str, Any] = {"sessions": set(), "phases": {}}
    channels = {a.process.pid: _channel_of(a), b.process.pid: _channel_of(b)}
    record["channels"] = channels
    record["master_before"] = _master_port(sentinel)

    # Before: sessions are shared through the Sentinel's master, both ways.
    record["shared_before"] = []
    for page_on, ws_on in ((a, b), (b, a)):
        outcome = await _timed(_session_works(page_on, ws_on, "before"), 15)
        entry = {"page": page_on.process.pid, "outcome": outcome[0], "detail": outcome[2]}
        if outcome[0] == "ok":
            entry["relayed"] = relayed(ws_on, outcome[2]["session_id"], APP)
            record["sessions"].add(outcome[2]["session_id"])
        record["shared_before"].append(entry)

    # Two failovers: Sentinel's own (the master is demoted to a replica of the promoted one),
    # then the host of the new master dies (SIGKILL) and the first one is promoted back.
    master, replica = servers
    for how in PHASES:
        if how == "kill":
            await asyncio.to_thread(_wait_replica_ready, sentinel, replica)
        record["phases"][how] = await _phase(how, master, replica, sentinel, a, b, channels, record["sessions"])
        master, replica = replica, master
    return record


def _wait_replica_ready(sentinel: Redis, replica: Redis) -> None:
    """Until ``replica`` replicates the master and the Sentinel counts it as a healthy replica."""
    _wait("the replica is in sync", lambda: replica.client.info("replication").get("master_link_status") == "up", 15)
    _wait(
        "the Sentinel knows the replica",
        lambda: any(
            int(r["port"]) == replica.port and r["flags"] == "slave"
            for r in sentinel.client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
        ),
        15,
    )


async def _phase(
    how: str, master: Redis, replica: Redis, sentinel: Redis, a: LiveServer, b: LiveServer,
    channels: dict[int, str | None], sessions: set[str],
) -> dict[str, Any]:
    record: dict[str, Any] = {}
    clients: list[Client] = []
    for name, page_on, via in (("relayedAB", a, b), ("relayedBA", b, a), ("localA", a, a), ("localB", b, b)):
        token, session_id = await load_page(page_on.url, APP)
        clients.append(Client(f"{how}-{name}", token, session_id, via, page_on))
        sessions.add(session_id)
    record["clients"] = clients
    try:
        for client in clients:
            await client.open()
        record["setup_relayed"] = {c.name: relayed(c.via, c.session_id, APP) for c in clients if c.kind == "relayed"}
        await asyncio.sleep(1.5)  # a heartbeat or two
        record["master_port"] = master.port
        record["master_before"] = _master_port(sentinel)
        record["records_before"] = _records(master, clients, channels)

        t0 = time.monotonic()
        stop = asyncio.Event()
        drivers = [asyncio.ensure_future(_drive(c, t0, stop)) for c in clients]
        await asyncio.sleep(1.0)

        if how == "kill":
            master.kill()
        else:
            assert sentinel.client.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        failed = time.monotonic()
        record["failed_at"] = round(failed - t0, 2)
        record["promoted_after"] = await asyncio.to_thread(
            _wait, "the Sentinel names the replica as master", lambda: _master_port(sentinel) == replica.port, 20
        )
        record["promoted_at"] = round(time.monotonic() - t0, 2)

        # Clients closed meanwhile reconnect with their original token, as BokehJS does.
        reconnect_stop = asyncio.Event()
        reconnecting: dict[str, asyncio.Future[Any]] = {}

        async def watch_closed() -> None:
            while not reconnect_stop.is_set():
                for c in clients:
                    if c.closed is not None and c.name not in reconnecting:
                        reconnecting[c.name] = asyncio.ensure_future(_reconnect(c, failed, t0, reconnect_stop))
                await asyncio.sleep(0.1)

        watcher = asyncio.ensure_future(watch_closed())

        # New sessions across processes work again within RECOVER_WITHIN of the failover.
        attempts = []
        record["recovered_after"] = None
        while time.monotonic() - failed < RECOVER_WITHIN + 3:
            outcome = await _timed(_session_works(a, b, "after failover"), 8)
            attempts.append((outcome[0], round(time.monotonic() - failed, 2), None if outcome[0] == "ok" else outcome[2]))
            if outcome[0] == "ok":
                record["recovered_after"] = time.monotonic() - failed
                sessions.add(outcome[2]["session_id"])
                record["after_relayed"] = relayed(b, outcome[2]["session_id"], APP)
                record["after_owner"] = outcome[2]["owner_pid"]
                break
            await asyncio.sleep(0.3)
        record["recovery_attempts"] = attempts

        await asyncio.sleep(max(0.0, failed + 6 - time.monotonic()))  # traffic goes on past the failover
        stop.set()
        await asyncio.wait(drivers, timeout=SILENT_AFTER + 5)
        reconnect_stop.set()
        watcher.cancel()
        if reconnecting:
            await asyncio.wait(list(reconnecting.values()), timeout=RECOVER_WITHIN + 10)
        for task in [*drivers, *reconnecting.values()]:
            task.cancel()

        await asyncio.sleep(1.5)  # heartbeats into the new master
        record["records_after"] = _records(replica, clients, channels)
        record["final_trips"] = {}
        for c in clients:
            if c.peer is None or c.peer.ws.close_code is not None:
                record["final_trips"][c.name] = f"not open (closed {c.closed})"
                continue
            outcome = await _timed(c.peer.round_trip(f"{c.name} final", seconds=SILENT_AFTER), SILENT_AFTER + 1)
            record["final_trips"][c.name] = outcome[0] if outcome[0] == "ok" else outcome
    finally:
        for c in clients:
            if c.peer is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(c.peer.close(), 5)
    return record


@pytest.fixture(scope="module")
def failover(tmp_path_factory) -> Iterator[dict[str, Any]]:
    _require()
    directory = tmp_path_factory.mktemp("sentinel")
    started: list[Any] = []
    try:
        master = Redis(directory / "master")
        started.append(master)
        replica = Redis(directory / "replica", "--replicaof", "127.0.0.1", str(master.port))
        started.append(replica)
        sentinel = Redis(
            directory / "sentinel",
            sentinel_conf=(
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} 1\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            ),
        )
        started.append(sentinel)
        # The Sentinel must know the replica before it can promote it (it learns it from INFO).
        _wait_replica_ready(sentinel, replica)
        hook_log = HookLog(directory / "hooks.log")
        env = {
            "BOKEHSERVE_TEST_SENTINELS": f"127.0.0.1:{sentinel.port}",
            "BOKEHSERVE_TEST_MASTER_NAME": MASTER_NAME,
            "BOKEHSERVE_TEST_HOOK_LOG": str(hook_log.path),
            "BOKEHSERVE_TEST_STATIC_ROOT": str(directory / "static"),
        }
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(LiveServer, APP_PATH, settings=SETTINGS, env=env) for _ in range(2)]
            servers = []
            for future in futures:
                with contextlib.suppress(RuntimeError, OSError):
                    servers.append(future.result())
        started.extend(servers)
        assert len(servers) == 2, "a runbokeh process did not start"
        a, b = servers
        record = asyncio.run(asyncio.wait_for(_scenario([master, replica], sentinel, a, b), 100))
        record.update(
            a=a, b=b, hook_log=hook_log, master=master, sentinel=sentinel,
            logs=describe(a, b, tail=6000) + f"\n--- sentinel ---\n{sentinel.log[-3000:]}",
        )
        yield record
    finally:
        for process in reversed(started):
            process.stop()


def _summary(phase: dict[str, Any]) -> str:
    lines = [
        f"failover at {phase['failed_at']} s, replica promoted at {phase['promoted_at']} s "
        f"({phase['promoted_after']:.1f} s later)"
    ]
    for c in phase["clients"]:
        bad = [t for t in c.trips if t[1] != "ok"]
        back = dict(c.reconnect or {})
        if back.get("attempts"):
            back["attempts"] = f"{len(back['attempts'])}, last {back['attempts'][-1]}"
        lines.append(
            f"{c.name} ({c.kind}): {len(c.trips)} trips, slowest {max((t[2] for t in c.trips), default=None)} s, "
            f"bad {bad}, closed {c.closed}, reconnect {back or None}"
        )
    return "\n".join(lines)


@pytest.fixture(params=PHASES)
def phase(request, failover) -> dict[str, Any]:
    return failover["phases"][request.param]


def test_sessions_are_shared_through_the_sentinels_master(failover) -> None:
    pids = {failover["a"].process.pid, failover["b"].process.pid}
    for entry in failover["shared_before"]:
        assert entry["outcome"] == "ok", f"{entry}\n{failover['logs']}"
        assert entry["relayed"], f"the WebSocket was not relayed: {entry}"
        assert entry["detail"]["owner_pid"] == entry["page"] and entry["page"] in pids, entry
    assert failover["master_before"] == failover["master"].port


def test_records_live_on_the_master(phase, failover) -> None:
    assert phase["master_before"] == phase["master_port"]
    assert all(phase["setup_relayed"].values()), phase["setup_relayed"]
    before = phase["records_before"]
    wrong = {name: got for name, got in before["owners"].items() if got[0] is None or got[0] != got[1]}
    assert not wrong, f"(owner record on the master, owner's channel): {wrong}\n{failover['logs']}"
    assert len(before["alive"]) == 2 and all(before["alive"].values()), before["alive"]


def test_new_sessions_work_soon_after_the_failover(phase, failover) -> None:
    recovered = phase["recovered_after"]
    attempts = phase["recovery_attempts"]
    assert recovered is not None and recovered <= RECOVER_WITHIN, (
        f"{len(attempts)} attempts (outcome, s after the failover, detail), the last ones: {attempts[-3:]}\n"
        f"{_summary(phase)}\n{failover['logs']}"
    )
    assert phase["after_relayed"], "the new session's WebSocket was not relayed"
    assert phase["after_owner"] == failover["a"].process.pid
    print(f"\nnew sessions worked {recovered:.1f} s after the failover ({_summary(phase)})")


def test_no_connection_stayed_open_and_silent(phase, failover) -> None:
    silent = [(c.name, c.silent) for c in phase["clients"] if c.silent is not None]
    assert not silent, f"open but silent (t, s): {silent}\n{_summary(phase)}\n{failover['logs']}"
    for c in phase["clients"]:
        if c.closed is not None:
            code, reason, _ = c.closed
            assert code is not None and 4000 <= code <= 4999 and reason, f"{c.name} closed with {c.closed}"
        for code, reason, _ in (c.reconnect or {}).get("closed_again", []):
            assert code is not None and 4000 <= code <= 4999 and reason, f"{c.name} closed again with {code} {reason}"


def test_existing_sessions_are_reachable_with_their_state(phase, failover) -> None:
    for c in phase["clients"]:
        if c.closed is None:
            continue
        back = c.reconnect
        assert back is not None and back["at"] is not None, (
            f"{c.name} could not reconnect\n{_summary(phase)}\n{failover['logs']}"
        )
        assert back["state"] == c.state, f"{c.name} reconnected to state {back['state']!r}, want {c.state!r}"
        assert back["pid"] == c.owner.process.pid, f"{c.name}'s session is now in pid {back['pid']}"
    bad = {name: outcome for name, outcome in phase["final_trips"].items() if outcome != "ok"}
    assert not bad, f"final round trips: {bad}\n{_summary(phase)}\n{failover['logs']}"


def test_records_are_on_the_new_master(phase, failover) -> None:
    after = phase["records_after"]
    wrong = {name: got for name, got in after["owners"].items() if got[0] is None or got[0] != got[1]}
    assert not wrong, f"(owner record on the new master, owner's channel): {wrong}\n{failover['logs']}"
    assert len(after["alive"]) == 2 and all(after["alive"].values()), f"{after['alive']}\n{failover['logs']}"


def test_app_ran_once_per_session(failover) -> None:
    ids = failover["sessions"] | ASKED
    ran, created = failover["hook_log"].created("app_ran"), failover["hook_log"].created()
    wrong = {sid: (ran[sid], created[sid]) for sid in ids if (ran[sid], created[sid]) != (1, 1)}
    assert not wrong, f"(app runs, on_session_created) per session, want (1, 1): {wrong}"
    assert not set(ran) - ids, f"sessions nobody asked for were created: {set(ran) - ids}"


def test_no_false_freeze_after_a_failover(failover) -> None:
    """Our liveness keys follow the new master at once: no process takes itself for frozen
    ("missed its heartbeats") because it kept beating into the old master meanwhile."""
    for server in (failover["a"], failover["b"]):
        assert "missed its heartbeats" not in server.log, describe(server)

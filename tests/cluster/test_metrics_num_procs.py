"""runbokeh --num-procs 2: a scrape of either worker gives one view of both (prometheus_client's
multi-process mode, set up by runbokeh), and a worker that dies leaves it."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.conftest import SETTINGS
from tests.cluster.helpers import HookLog, close_all, connect, describe, load_page, relayed
from tests.live import LiveServer

pytestmark = pytest.mark.redis

REAPING = ("--unused-session-lifetime", "300", "--check-unused-sessions", "200")
DEADLINE = 20  # seconds any wait below may take at most
MAX_OPENS = 24  # sessions opened at most to get some onto each worker
OPENS_AT_ONCE = 4


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrapes_until(server: LiveServer, condition, what: str, in_a_row: int = 6) -> dict:
    """Scrape until ``in_a_row`` consecutive scrapes (each may reach either worker) meet ``condition``."""
    deadline = time.monotonic() + DEADLINE
    good = 0
    while True:
        samples = await asyncio.to_thread(scrape, server.url)
        good = good + 1 if condition(samples) else 0
        if good >= in_a_row:
            return samples
        if time.monotonic() > deadline:
            mine = {k: v for k, v in samples.items() if "hooks" in str(k) or "process" in k[0] or "relay" in k[0]}
            raise AssertionError(f"{what} within {DEADLINE} s; last scrape: {mine}\n{describe(server)}")
        await asyncio.sleep(0.1)


async def test_either_worker_answers_for_both(redis, tmp_path: Path) -> None:
    hook_log = HookLog(tmp_path / "hooks.log")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {"REDIS_URL": redis.url, "BOKEHSERVE_TEST_HOOK_LOG": str(hook_log.path), "TMPDIR": str(temp)}
    server = LiveServer("--num-procs", "2", *REAPING, settings=SETTINGS, env=env)
    peers, session_ids = [], []

    async def open_one() -> None:
        token, session_id = await load_page(server.url, "hooks")
        peer = await connect(server.url, token, app="hooks")
        peers.append(peer)
        await peer.pull()
        session_ids.append(session_id)

    try:
        await hook_log.wait_for_loaded_workers(2, server)
        # Page and WebSocket are separate connections; the kernel hands each to either worker,
        # and may give a run of sequential ones to the same worker: sessions are opened a
        # batch at a time, which keeps one worker busy while the next connection arrives.
        while len(hook_log.creator_pids(set(session_ids))) < 2:
            assert len(session_ids) < MAX_OPENS, f"all sessions landed on one worker\n{describe(server)}"
            await asyncio.gather(*(open_one() for _ in range(OPENS_AT_ONCE)))
        total = len(session_ids)
        relayed_count = sum(relayed(server, sid, "hooks") for sid in session_ids)

        def aggregated(s: dict) -> bool:
            return (
                value(s, "bokehserve_processes") == 2
                and value(s, "bokehserve_sessions", app="hooks") == total
                and value(s, "bokehserve_connections", app="hooks") == total
                and value(s, "bokehserve_relayed_connections", side="edge") == relayed_count
                and value(s, "bokehserve_relayed_connections", side="owner") == relayed_count
            )

        samples = await scrapes_until(server, aggregated, f"{total} sessions on two workers in one view")
        assert value(samples, "bokehserve_sessions_created_total", app="hooks") == total
        assert value(samples, "bokehserve_redis_up") == 1  # the lowest of both workers
        assert value(samples, "bokehserve_relay_round_trip_seconds_count") == relayed_count
        pulls = value(samples, "bokehserve_messages_total", direction="in", msgtype="PULL-DOC-REQ")
        assert pulls >= total  # the hooks app's own sessions, from both workers
        [directory] = list(temp.glob("bokehserve-metrics-*"))
        assert sorted({path.name.split("_")[0] for path in directory.glob("*.db")}) >= ["counter", "gauge"]

        # A worker killed outright: its live gauges leave the view once runbokeh notices.
        victim = next(iter(hook_log.creator_pids(set(session_ids))))
        os.kill(victim, signal.SIGKILL)
        await close_all(peers)
        peers = []
        await scrapes_until(
            server,
            lambda s: value(s, "bokehserve_processes") == 1 and value(s, "bokehserve_sessions", app="hooks") == 0,
            "one live worker and no sessions after the kill",
            in_a_row=3,
        )
    finally:
        await close_all(peers)
        server.stop()
    assert not list(temp.glob("bokehserve-metrics-*")), "runbokeh left its metrics directory behind"

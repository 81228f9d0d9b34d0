"""Memory goes back down after waves of sessions are reaped (gc, then glibc's malloc_trim).

Under CPython's own small-object allocator (the default), freed objects stay in its arenas
and part of a wave stays resident, trim or not; docs/operations.md#memory has the figures and
recommends PYTHONMALLOC=malloc for sites that see such waves. These tests run the server that
way, so they measure what the trim does: without it, RSS stays at the peak.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from pathlib import Path

import pytest

from bokehserve_django import sessions
from tests.bokeh_client import PROTOCOL, RawBokehClient
from tests.live import LiveServer

FIGURE_APP = Path(__file__).resolve().parents[1] / "apps" / "figure_app.py"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def open_and_leave(server: LiveServer, app: str) -> None:
    html = await asyncio.to_thread(lambda: urllib.request.urlopen(f"{server.url}/{app}", timeout=20).read().decode())
    token = re.search(r'"token":\s*"([^"]+)"', html).group(1)
    client = await RawBokehClient.connect(server.url.replace("http", "ws") + f"/{app}/ws", token)
    try:
        assert (await asyncio.wait_for(client.recv(), 20)).msgtype == "ACK"
        await client.send(PROTOCOL.create("PULL-DOC-REQ"))
        await asyncio.wait_for(client.recv_type("PULL-DOC-REPLY"), 20)
    finally:
        await client.close()


async def wave(server: LiveServer, app: str, count: int) -> None:
    gate = asyncio.Semaphore(20)

    async def one() -> None:
        async with gate:
            await open_and_leave(server, app)

    await asyncio.gather(*(one() for _ in range(count)))


def wait_for_discards(server: LiveServer, count: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and discarded(server.log) < count:
        time.sleep(0.5)
    assert discarded(server.log) == count, server.log[-3000:]


def discarded(log: str) -> int:
    return sum(int(n) for n in re.findall(r"Discarded (\d+) unused session", log))


def test_release_free_memory_finds_glibc_here() -> None:
    # The suite runs on Debian (glibc): the trim must be available, or the test below proves nothing.
    assert sessions.release_free_memory() is True


@pytest.mark.timeout(240)
def test_two_rounds_of_300_abandoned_sessions_leave_rss_near_its_baseline() -> None:
    # The load test: a plain figure app, 300 sessions opened and abandoned, twice.
    rounds, count = 2, 300
    server = LiveServer(
        str(FIGURE_APP),
        "--unused-session-lifetime", "8000",
        "--check-unused-sessions", "1000",
        env={"PYTHONMALLOC": "malloc"},
    )
    try:
        pid = server.process.pid
        asyncio.run(open_and_leave(server, "figure_app"))
        wait_for_discards(server, 1, 30)
        time.sleep(2)
        baseline = rss_mib(pid)
        figures = []
        for done in range(1, rounds + 1):
            asyncio.run(wave(server, "figure_app", count))
            peak = rss_mib(pid)
            wait_for_discards(server, 1 + done * count, 90)
            time.sleep(3)  # the sweep's deferred gc + trim
            figures.append((peak, rss_mib(pid)))
        print(f"\nRSS baseline {baseline:.1f} MiB; (peak, after reaping) per round: {figures}")
        assert figures[0][0] - baseline > 10, f"a round grew RSS by only {figures[0][0] - baseline:.1f} MiB"
        for _peak, after in figures:
            assert after - baseline < 10, (baseline, figures)
    finally:
        server.stop()

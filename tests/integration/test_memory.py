"""Memory goes back down after a wave of sessions is reaped (gc, then glibc's malloc_trim).

Under CPython's own small-object allocator (the default), freed objects stay in its arenas
and RSS barely moves, trim or not; docs/operations.md#memory has the figures and recommends
PYTHONMALLOC=malloc for sites that see such waves. This test runs the server that way, so it
measures what the trim does: without it, RSS stays at the peak.
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

WAVE = 25
HOG_APP = Path(__file__).resolve().parents[1] / "apps" / "memory_hog.py"


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


async def wave(server: LiveServer, app: str) -> None:
    gate = asyncio.Semaphore(20)

    async def one() -> None:
        async with gate:
            await open_and_leave(server, app)

    await asyncio.gather(*(one() for _ in range(WAVE)))


def discarded(log: str) -> int:
    return sum(int(n) for n in re.findall(r"Discarded (\d+) unused session", log))


def test_release_free_memory_finds_glibc_here() -> None:
    # The suite runs on Debian (glibc): the trim must be available, or the test below proves nothing.
    assert sessions.release_free_memory() is True


@pytest.mark.timeout(180)
def test_rss_returns_near_its_baseline_after_reaping() -> None:
    server = LiveServer(
        str(HOG_APP),
        "--unused-session-lifetime", "5000",
        "--check-unused-sessions", "1000",
        env={"PYTHONMALLOC": "malloc"},
    )
    try:
        pid = server.process.pid
        asyncio.run(open_and_leave(server, "memory_hog"))  # imports and first-run costs
        time.sleep(4)
        baseline = rss_mib(pid)
        asyncio.run(wave(server, "memory_hog"))
        peak = rss_mib(pid)
        assert peak - baseline > 20, f"the wave grew RSS by only {peak - baseline:.1f} MiB: nothing to measure"
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and discarded(server.log) < WAVE + 1:
            time.sleep(0.5)
        assert discarded(server.log) == WAVE + 1, server.log[-3000:]
        time.sleep(3)  # the sweep's deferred gc + trim runs about a second after the discards
        after = rss_mib(pid)
        print(f"\nRSS baseline {baseline:.1f} MiB, peak {peak:.1f} MiB, after reaping {after:.1f} MiB")
        assert after - baseline < (peak - baseline) / 2, (baseline, peak, after)
    finally:
        server.stop()

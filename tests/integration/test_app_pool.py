"""App code cannot stall the server (a real runbokeh process): a per-app share of the pool, and a time limit.

- While 20 sessions of a slow app (45 s of app code; the issue says 20) are pending, sessions of another app open
  as fast as on a twin server without them (p99 added at most 100 ms, the issue's figure), and
  the slow app holds only its share of the threads (APP_CODE_THREADS_PER_APP).
- An app whose code hangs is refused after APP_CODE_TIMEOUT with a clear page (503, Retry-After)
  and one log line; its WebSocket closes with a code and the same reason; when the hung code
  finally returns, its document is freed.

Before the pool, app code ran on one thread with no limit: the other app's opens waited for
every slow session ahead of them (seconds each).
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
import urllib.error
import urllib.request

import pytest
from bokeh.document import Document

from tests.bokeh_client import PROTOCOL, RawBokehClient, make_token
from tests.integration.hooks_db import SETTINGS, env_for
from tests.integration.test_hooks_orm import TOKEN_RE
from tests.live import LiveServer

SLOW_SESSIONS = 20
SAMPLES = 100
#: The issue's bound on what pending slow sessions may add to another app's session opening.
ADDED_P99_LIMIT = 0.100


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


async def open_session(server: LiveServer, app: str) -> float:
    """Seconds to open one session of ``app`` as a browser does: the page, then its WebSocket and document."""
    started = time.perf_counter()
    html = await asyncio.to_thread(lambda: urllib.request.urlopen(f"{server.url}/{app}", timeout=30).read().decode())
    token = TOKEN_RE.search(html).group(1)
    client = await RawBokehClient.connect(server.url.replace("http://", "ws://") + f"/{app}/ws", token)
    try:
        await client.recv_type("ACK")
        await client.send(PROTOCOL.create("PULL-DOC-REQ"))
        reply = await client.recv_type("PULL-DOC-REPLY")
        reply.push_to_document(Document())
    finally:
        await client.close()
    return time.perf_counter() - started


async def open_times(server: LiveServer, app: str, count: int) -> list[float]:
    return [await open_session(server, app) for _ in range(count)]


def start_slow_pages(server: LiveServer, count: int) -> tuple[list[threading.Thread], list[object]]:
    """``count`` page requests of the slow app, each in its own thread; their outcomes land in the list."""
    outcomes: list[object] = []

    def fetch() -> None:
        try:
            with urllib.request.urlopen(f"{server.url}/slow", timeout=60) as response:
                outcomes.append(response.status)
        except Exception as exc:  # noqa: BLE001 (recorded: the server is stopped under them)
            outcomes.append(exc)

    threads = [threading.Thread(target=fetch, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, outcomes


def wait_for_lines(path, count: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            break
        time.sleep(0.05)
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_pending_sessions_of_a_slow_app_do_not_delay_another_app(hooks_db, tmp_path) -> None:
    """The baseline is a twin server without the slow sessions, measured in turn with the loaded one.

    This machine is shared: a burst of someone else's work during one phase only would show
    as added latency. Opening a session on each server in turn exposes both to the same bursts.
    Even so, with the 2 cores at a load of 4-5 (other test runs), the p99 of 60 samples of
    either server moves by a few hundred ms from run to run; the medians stay within a few ms.
    100 pairs keep the p99 from resting on one or two unlucky samples. Still, at a load of 3-4
    on 2 cores (other test runs), two unloaded twins measured this way differed by up to 208 ms
    at p99: under such load a failure may be the machine's; the message lists the slowest opens.
    """
    slow_log = tmp_path / "slow.log"
    env = {
        **env_for(hooks_db),
        "BOKEHSERVE_TEST_APP_CODE": "6,3,60",  # 6 threads, 3 per app, 60 s limit
        # The slow app takes 20 s; 45 s outlasts the measurement (15-25 s) with room to spare.
        "BOKEHSERVE_TEST_SLOW_SECONDS": "45",
        "BOKEHSERVE_TEST_SLOW_LOG": str(slow_log),
        # The measured sessions end soon after their WebSocket closes, so that the number of
        # live sessions (each makes Python's gc slower) stays low and alike on both servers;
        # not so soon that a page's session is reaped before a slowed-down client connects.
        "BOKEHSERVE_TEST_SESSION_LIFETIME": "5000",
    }
    loaded_server = LiveServer(settings=SETTINGS, env=env)
    twin = LiveServer(settings=SETTINGS, env=env)
    threads: list[threading.Thread] = []
    try:
        for server in (loaded_server, twin):
            asyncio.run(open_times(server, "echo", 10))  # warm-up: imports, caches, first sessions
        alone = asyncio.run(open_times(loaded_server, "echo", 20))  # for the record only
        threads, outcomes = start_slow_pages(loaded_server, SLOW_SESSIONS)
        # The slow app's share of threads is taken; its other 17 sessions wait for one.
        assert wait_for_lines(slow_log, 3, timeout=10) == 3, loaded_server.log[-3000:]
        started = time.monotonic()
        baseline, loaded = [], []
        for _ in range(SAMPLES):
            baseline.append(asyncio.run(open_session(twin, "echo")))
            loaded.append(asyncio.run(open_session(loaded_server, "echo")))
        measured_for = time.monotonic() - started
        # All 20 were still pending throughout, and the slow app never held more than its share.
        assert outcomes == [], outcomes
        assert len(slow_log.read_text().splitlines()) == 3
        added = p99(loaded) - p99(baseline)
        print(f"echo session open, p99 (median): {p99(baseline) * 1000:.1f} ({statistics.median(baseline) * 1000:.1f}) ms "
              f"on the twin, {p99(loaded) * 1000:.1f} ({statistics.median(loaded) * 1000:.1f}) ms with {SLOW_SESSIONS} "
              f"slow sessions pending: added {added * 1000:.1f} ms at p99; same server before the load "
              f"{p99(alone) * 1000:.1f} ({statistics.median(alone) * 1000:.1f}) ms; measured over {measured_for:.1f} s")
        slowest = {name: [round(x * 1000) for x in sorted(samples)[-5:]] for name, samples in
                   (("twin", baseline), ("loaded", loaded))}
        assert added <= ADDED_P99_LIMIT, f"the five slowest opens (ms): {slowest}"
    finally:
        loaded_server.process.kill()  # the pending slow sessions are of no further interest
        loaded_server.stop()
        twin.stop()
    for thread in threads:
        thread.join(10)


def test_a_hung_app_is_refused_after_the_time_limit_and_the_others_keep_working(hooks_db) -> None:
    env = {
        **env_for(hooks_db),
        "BOKEHSERVE_TEST_APP_CODE": "6,3,2",  # a 2 s limit
        "BOKEHSERVE_TEST_HANG_SECONDS": "6",
    }
    server = LiveServer(settings=SETTINGS, env=env)
    try:
        started = time.monotonic()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{server.url}/hangs", timeout=30)
        waited = time.monotonic() - started
        assert 2 <= waited < 10, waited
        response = refused.value
        assert response.code == 503
        assert int(response.headers["Retry-After"]) >= 2
        page = response.read().decode()
        assert "The app &#x27;hangs&#x27; did not build its page within 2 seconds" in page, page
        log = server.log
        assert "Refused session" in log and "of app 'hangs': The app code did not finish within 2 s (APP_CODE_TIMEOUT)" in log, log
        assert "its thread keeps running" in log
        # Another app is served meanwhile.
        assert asyncio.run(open_session(server, "echo")) < 5
        # A WebSocket that would create a session of the hung app closes with a code and a reason.
        code, reason = asyncio.run(websocket_close_of(server, "hangs"))
        assert code == 1001 and "did not build its page within 2 seconds" in reason, (code, reason)
        # The hung code returns after 6 s: its document is freed then.
        deadline = time.monotonic() + 15
        while "has ended; its document is freed" not in server.log and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "has ended; its document is freed" in server.log, server.log[-3000:]
    finally:
        server.stop()


async def websocket_close_of(server: LiveServer, app: str) -> tuple[int | None, str]:
    from websockets.exceptions import ConnectionClosed

    client = await RawBokehClient.connect(server.url.replace("http://", "ws://") + f"/{app}/ws", make_token())
    try:
        async with asyncio.timeout(30):
            while True:
                await client.ws.recv()
    except ConnectionClosed as closed:
        return (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (None, "")
    finally:
        await client.close()


def probe_status(server: LiveServer, path: str) -> tuple[int, dict]:
    import json

    try:
        with urllib.request.urlopen(f"{server.url}{path}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_readiness_is_503_while_every_app_code_thread_is_taken(hooks_db) -> None:
    env = {
        **env_for(hooks_db),
        "BOKEHSERVE_TEST_APP_CODE": "2,2,30",  # two threads, both for one app if need be
        "BOKEHSERVE_TEST_HANG_SECONDS": "5",
    }
    server = LiveServer(settings=SETTINGS, env=env)
    pages = [threading.Thread(target=lambda: urllib.request.urlopen(f"{server.url}/hangs", timeout=30).read())
             for _ in range(2)]
    try:
        # Ready once every app's on_server_loaded has run: those hooks take the pool's threads too.
        deadline = time.monotonic() + 10
        while (ready := probe_status(server, "/readyz"))[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready == (200, {"ready": True, "reason": "ready", "detail": "This process takes new sessions."}), ready
        for page in pages:
            page.start()
        deadline = time.monotonic() + 4
        status, body = probe_status(server, "/readyz")
        while status == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
            status, body = probe_status(server, "/readyz")
        assert (status, body["reason"]) == (503, "busy"), body
        assert "APP_CODE_THREADS" in body["detail"]
        assert probe_status(server, "/healthz") == (200, {"status": "alive"})  # liveness is not the pool
        for page in pages:
            page.join(20)
        assert probe_status(server, "/readyz")[0] == 200  # the threads are free again
    finally:
        server.stop()
        for page in pages:
            if page.ident is not None:  # started (a failed assertion above may come first)
                page.join(10)

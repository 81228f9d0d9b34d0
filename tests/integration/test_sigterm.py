"""SIGTERM is a graceful drain: real runbokeh / daphne processes, clients connected straight to them.

Every client gets a close frame (1001 and a reason, never 1006), the hooks run, the port
refuses new connections at once, and the process exits with 0 within DRAIN_TIMEOUT plus a
few seconds; a second signal cuts the drain short; a stop that hangs still ends in time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets
from bokeh.util.token import get_session_id
from websockets.exceptions import ConnectionClosed

from bokehserve_django.server import STOP_GRACE
from tests.bokeh_client import make_token
from tests.cluster.helpers import HookLog
from tests.live import ROOT, LiveServer, free_port

DRAIN_TIMEOUT = 2
#: How long after the signal the process must be gone: DRAIN_TIMEOUT + the server's grace.
EXIT_WITHIN = DRAIN_TIMEOUT + STOP_GRACE + 1


async def open_client(base_url: str, app: str = "hooks") -> tuple[websockets.ClientConnection, str]:
    """A WebSocket with its own new session (the token names a fresh id); ACK received."""
    token = make_token()
    ws = await websockets.connect(
        base_url.replace("http://", "ws://") + f"/{app}/ws", subprotocols=["bokeh", token], max_size=None,
        open_timeout=20, close_timeout=5,
    )
    header = await asyncio.wait_for(ws.recv(), 20)
    assert '"ACK"' in header
    await ws.recv(), await ws.recv()  # metadata, content
    return ws, get_session_id(token)


async def close_frame(ws: websockets.ClientConnection, seconds: float) -> tuple[int | None, str, bool]:
    """Read until the server closes; (code, reason, whether a close frame came)."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        received = closed.rcvd  # None: the TCP connection ended without a close frame (1006)
        return (received.code if received else None), (received.reason if received else ""), received is not None


def refused_soon(port: int, within: float = 1.0) -> bool:
    """Whether a new TCP connection to ``port`` is refused within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except ConnectionRefusedError:
            return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


def wait_exit(process: subprocess.Popen, started: float, within: float) -> int | None:
    """The exit code, or None (after killing it) if it did not exit ``within`` s of ``started``."""
    try:
        return process.wait(max(within - (time.monotonic() - started), 0.1))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
        return None


async def assert_graceful_stop(process: subprocess.Popen, base_url: str, port: int, hook_log: HookLog,
                               log: callable) -> None:
    clients = [await open_client(base_url) for _ in range(2)]
    session_ids = {session_id for _, session_id in clients}
    assert set(hook_log.created()) >= session_ids

    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    closes = asyncio.gather(*(close_frame(ws, EXIT_WITHIN) for ws, _ in clients))
    refused = await asyncio.to_thread(refused_soon, port)
    results = await closes
    code = await asyncio.to_thread(wait_exit, process, started, EXIT_WITHIN)

    assert refused, "the port still accepted connections 1 s after SIGTERM"
    for close_code, reason, had_frame in results:
        assert had_frame, f"no close frame (1006); server log:\n{log()[-3000:]}"
        assert close_code == 1001 and reason, (close_code, reason)
    assert code == 0, f"exit code {code} (None: still running after {EXIT_WITHIN} s)\n{log()[-3000:]}"
    destroyed = {session_id for _, session_id in hook_log.lines("on_session_destroyed")}
    assert destroyed >= session_ids
    assert [pid for pid, _ in hook_log.lines("on_server_unloaded")] == [process.pid]


@pytest.fixture
def hook_log(tmp_path) -> HookLog:
    return HookLog(tmp_path / "hooks.log")


async def test_runbokeh_sigterm_closes_clients_with_1001_and_exits(hook_log) -> None:
    server = LiveServer("--drain-timeout", str(DRAIN_TIMEOUT), env={"BOKEHSERVE_TEST_HOOK_LOG": str(hook_log.path)})
    try:
        await assert_graceful_stop(server.process, server.url, server.port, hook_log, lambda: server.log)
        assert "Stopped listening" in server.log
    finally:
        server.stop()


async def test_daphne_module_sigterm_closes_clients_with_1001_and_exits(hook_log, tmp_path) -> None:
    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONUNBUFFERED": "1",
           "BOKEHSERVE_TEST_HOOK_LOG": str(hook_log.path)}
    env.pop("BOKEHSERVE_RUN_OVERRIDES", None)
    log_path = tmp_path / "daphne.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "bokehserve_django.daphne", "tests.asgi:application", "--bind", "127.0.0.1",
             "--port", str(port), "--drain-timeout", str(DRAIN_TIMEOUT)],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
        await assert_graceful_stop(process, f"http://127.0.0.1:{port}", port, hook_log, log_path.read_text)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


async def test_second_sigterm_cuts_the_drain_short(hook_log) -> None:
    long_drain = 60
    server = LiveServer("--drain-timeout", str(long_drain), env={"BOKEHSERVE_TEST_HOOK_LOG": str(hook_log.path)})
    try:
        clients = [await open_client(server.url) for _ in range(2)]
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*(close_frame(ws, 15) for ws, _ in clients))
        code = await asyncio.to_thread(wait_exit, server.process, started, 15)
        for close_code, reason, had_frame in results:
            assert had_frame and close_code == 1001 and reason, (close_code, reason, server.log[-3000:])
        assert code == 0, server.log[-3000:]
        destroyed = {session_id for _, session_id in hook_log.lines("on_session_destroyed")}
        assert destroyed >= {session_id for _, session_id in clients}
    finally:
        server.stop()


async def test_a_stop_that_hangs_still_ends_in_time(tmp_path) -> None:
    app = Path(__file__).resolve().parents[1] / "apps" / "hangs_on_destroy.py"
    server = LiveServer(str(app), "--drain-timeout", "1")
    try:
        ws, _ = await open_client(server.url, app="hangs_on_destroy")
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(wait_exit, server.process, started, 1 + STOP_GRACE + 2)
        await ws.close()
        assert code is not None, "still running"
        assert code != 0  # the watchdog's exit: the stop did not finish
        assert "Stopping took longer than" in server.log
        assert "hangs_on_destroy.py" in server.log  # the thread dump shows where it hung
    finally:
        server.stop()

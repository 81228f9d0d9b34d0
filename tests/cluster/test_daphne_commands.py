"""The production commands of docs/cluster.md: several `python -m bokehserve_django.daphne`
processes (TCP ports and a unix socket) sharing one Redis, without runbokeh."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster.helpers import HookLog, connect, load_page, stop_process, token_in_page
from tests.live import ROOT, free_port

pytestmark = pytest.mark.redis


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=20)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(self.unix_path)


def start_daphne(endpoint: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "bokehserve_django.daphne", "tests.asgi:application", *endpoint]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_until(check, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("daphne did not answer in time")


async def test_two_daphne_processes_and_a_unix_socket_share_sessions(redis, cluster_dir, tmp_path) -> None:
    hook_log = HookLog(tmp_path / "hooks.log")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.cluster.settings",
        "REDIS_URL": redis.url,
        "BOKEHSERVE_TEST_HOOK_LOG": str(hook_log.path),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("BOKEHSERVE_RUN_OVERRIDES", None)
    port_a, port_b = free_port(), free_port()
    unix_path = str(tmp_path / "bokeh.sock")
    processes = [
        start_daphne(["--bind", "127.0.0.1", "--port", str(port_a)], env, tmp_path / "a.log"),
        start_daphne(["--bind", "127.0.0.1", "--port", str(port_b)], env, tmp_path / "b.log"),
        start_daphne(["-u", unix_path], env, tmp_path / "u.log"),
    ]
    try:
        for port in (port_a, port_b):
            wait_until(lambda port=port: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True)
        wait_until(lambda: os.path.exists(unix_path))

        # The page on the unix-socket process, its WebSocket on A: relayed, one session.
        connection = UnixHTTPConnection(unix_path)
        connection.request("GET", "/hooks?a=1", headers={"Host": "127.0.0.1"})
        response = connection.getresponse()
        assert response.status == 200
        token = token_in_page(response.read().decode())
        peer = await connect(f"http://127.0.0.1:{port_a}", token, app="hooks")
        document = await peer.pull()
        assert document.get_model_by_name("info").text.startswith("args=['a']")
        await peer.close()

        # A page on B and its WebSocket on A: a widget round trip through the relay.
        base_b = f"http://127.0.0.1:{port_b}"
        token, _ = await load_page(base_b, "echo")
        peer = await connect(f"http://127.0.0.1:{port_a}", token)
        await peer.round_trip("through daphne")
        await peer.close()

        assert sum(hook_log.created().values()) == 1  # the hooks app ran once for its session
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = [stop_process(process) for process in processes]
    # SIGTERM: sessions destroyed, on_server_unloaded ran, in every process that loaded apps.
    assert len(hook_log.lines("on_server_unloaded")) >= 1, (tmp_path / "u.log").read_text()[-2000:]
    assert all(code is not None for code in codes)

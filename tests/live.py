"""Starts real runbokeh (daphne) processes for integration and browser tests, on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """A ``manage.py runbokeh`` process; ``url`` is its base URL, ``log`` its output so far."""

    def __init__(self, *args: str, settings: str = "tests.settings", env: dict[str, str] | None = None,
                 port: int | None = None, startup_timeout: float = 30) -> None:
        self.port = port or free_port()
        # --ssl-certfile: the server speaks HTTPS; the readiness probe does not check its certificate.
        tls = "--ssl-certfile" in args or any(arg.startswith("--ssl-certfile=") for arg in args)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._probe_context = ssl._create_unverified_context() if tls else None
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bokehserve-test-{self.port}.log"
        command = [sys.executable, str(ROOT / "manage.py"), "runbokeh", "--settings", settings,
                   "--port", str(self.port), "--address", "127.0.0.1", *args]
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env.pop("BOKEHSERVE_RUN_OVERRIDES", None)
        self._log_file = open(self.log_path, "w")
        self.process = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=self._log_file,
                                        stderr=subprocess.STDOUT)
        self._wait_ready(startup_timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"runbokeh exited with {self.process.returncode}:\n{self.log}")
            try:
                urllib.request.urlopen(self.url + "/favicon.ico", timeout=2, context=self._probe_context).read()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"runbokeh did not answer within {timeout} s:\n{self.log}")

    @property
    def log(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM (sessions are destroyed, hooks run), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log_file.close()
        return self.process.returncode


@contextmanager
def live_server(*args: str, **kwargs):
    server = LiveServer(*args, **kwargs)
    try:
        yield server
    finally:
        server.stop()

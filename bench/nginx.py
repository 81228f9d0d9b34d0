"""nginx in front of a server under test, running the documented docs/deploy/nginx.conf.

The bench renders that file as tests/cluster/helpers.py does (free ports, a private pid, log
and temp directory, one upstream), with one difference: the proxying server block listens on
plain HTTP instead of terminating TLS, so that what the bench measures is the Python servers
behind nginx, not TLS handshakes (which cost nginx and the client alike under either server).
Everything inside ``location /`` (upgrade headers, no buffering, keep-alive to the upstream)
is the documented configuration, unchanged.

nginx is started by the bench and stopped by its PID (SIGTERM to the master, which stops its
workers); its CPU is read from /proc for the master and its workers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from servers import HOST, REPO, cpu_seconds, free_port, process_tree

NGINX = "/usr/sbin/nginx"
NGINX_CONF = REPO / "docs" / "deploy" / "nginx.conf"


def render(template: str, replacements: list[tuple[str, str]]) -> str:
    """The documented config with the bench's ports and paths; every replaced text must be there."""
    for old, new in replacements:
        if old not in template:
            raise RuntimeError(
                f"docs/deploy/nginx.conf no longer contains {old!r}; update bench/nginx.py to match it"
            )
        template = template.replace(old, new)
    return template


class Nginx:
    """nginx on ``HOST:port`` (picked here), proxying everything to ``HOST:upstream_port``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()  # known before the upstream starts: its allowed WebSocket origin
        self.proc: subprocess.Popen | None = None
        self.version = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip()

    @property
    def origin(self) -> str:
        """What a browser on a page served through this nginx sends as the WebSocket Origin's host."""
        return f"{HOST}:{self.port}"

    def start(self, upstream_port: int, timeout: float = 10.0) -> None:
        for sub in ("logs", "temp"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        temp = self.directory / "temp"
        temp_paths = "".join(
            f"\n    {kind}_temp_path {temp / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        conf = render(
            NGINX_CONF.read_text(),
            [
                # root runs workers as root here (the temp dir is root's); others cannot switch user.
                ("user www-data;", "user root;" if os.geteuid() == 0 else ""),
                ("pid /run/nginx.pid;", f"pid {self.directory / 'nginx.pid'};"),
                ("error_log /var/log/nginx/error.log warn;", f"error_log {self.directory / 'logs' / 'error.log'} warn;"),
                # No access log: one line per request is work the bench would measure as nginx's.
                ("access_log /var/log/nginx/access.log;", f"access_log off;{temp_paths}"),
                (
                    "        server 127.0.0.1:8001 max_fails=0;\n        server 127.0.0.1:8002 max_fails=0;",
                    f"        server {HOST}:{upstream_port} max_fails=0;",
                ),
                # The redirecting port-80 server gets a free port nobody uses.
                ("listen 80;", f"listen {HOST}:{free_port()};"),
                ("listen [::]:80;", ""),
                # The proxying server: plain HTTP on the bench's port, no certificate.
                ("listen 443 ssl;", f"listen {HOST}:{self.port};"),
                ("listen [::]:443 ssl;", ""),
                ("ssl_certificate     /etc/letsencrypt/live/example.com/fullchain.pem;", ""),
                ("ssl_certificate_key /etc/letsencrypt/live/example.com/privkey.pem;", ""),
                ("ssl_protocols TLSv1.2 TLSv1.3;", ""),
                ("ssl_session_cache shared:SSL:10m;", ""),
                ("alias /srv/mysite/staticfiles/;", f"alias {self.directory / 'static'}/;"),
            ],
        )
        conf_path = self.directory / "nginx.conf"
        conf_path.write_text(conf)
        error_log = self.directory / "logs" / "error.log"
        with open(self.directory / "logs" / "stdout.log", "w") as output:
            self.proc = subprocess.Popen(
                [NGINX, "-e", str(error_log), "-p", str(self.directory), "-c", str(conf_path), "-g", "daemon off;"],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.error_log()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen on {HOST}:{self.port} within {timeout:g} s:\n{self.error_log()}")

    def error_log(self) -> str:
        path = self.directory / "logs" / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cpu(self) -> float:
        """CPU seconds of the master and its workers so far."""
        return sum(cpu_seconds(pid) for pid in process_tree(self.proc.pid)) if self.proc is not None else 0.0

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the master stops its workers
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

"""Pieces of a test cluster: redis-server and nginx processes, docs/deploy/nginx.conf rendered for
them, a Bokeh protocol client with timeouts, page loads through HTTP, and the hook log.

Every process here is started by the tests and stopped by its own PID. All waits are bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websockets
from bokeh.document import Document
from bokeh.util.token import get_session_id
from websockets.exceptions import ConnectionClosed

from tests.bokeh_client import PROTOCOL, RawBokehClient, make_token
from tests.live import ROOT, LiveServer, free_port

REDIS_SERVER = "/usr/bin/redis-server"
NGINX = "/usr/sbin/nginx"
NGINX_CONF = ROOT / "docs" / "deploy" / "nginx.conf"

#: Seconds to wait for any one message, handshake or HTTP response.
TIMEOUT = 10


def wait_for_port(port: int, timeout: float, process: subprocess.Popen | None = None, what: str = "") -> None:
    """Until something accepts connections on 127.0.0.1:port (or the process exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what or process.args[0]} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout} s")


def stop_process(process: subprocess.Popen, timeout: float = 10) -> int | None:
    """SIGTERM this process (by its PID), SIGKILL if it has not exited within ``timeout``."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait(5)
    return process.returncode


# ---------------------------------------------------------------------------
# redis-server
# ---------------------------------------------------------------------------


class RedisServer:
    """A throwaway redis-server on 127.0.0.1 (no persistence); ``restart`` keeps the port."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> None:
        with open(self.directory / "redis.log", "a") as log:
            self.process = subprocess.Popen(
                [
                    REDIS_SERVER,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                    "--daemonize",
                    "no",
                    "--loglevel",
                    "warning",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {self.log}")
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer PING within {timeout} s: {self.log}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> bytes:
        """One command over RESP, the raw reply (for checks such as KEYS)."""
        payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(payload.encode())
            sock.settimeout(0.5)
            chunks = []
            with contextlib.suppress(TimeoutError, socket.timeout):
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            return b"".join(chunks)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def restart(self, down_for: float) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    @property
    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


# ---------------------------------------------------------------------------
# nginx with docs/deploy/nginx.conf
# ---------------------------------------------------------------------------


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


def render_nginx_conf(template: str, replacements: list[tuple[str, str]]) -> str:
    """The documented config with test ports and paths; every replaced text must be there."""
    for old, new in replacements:
        assert old in template, (
            f"docs/deploy/nginx.conf no longer contains {old!r}; update tests/cluster/helpers.py"
        )
        template = template.replace(old, new)
    return template


class Nginx:
    """nginx running docs/deploy/nginx.conf in front of ``upstreams`` (ports), on free local ports.

    ``http_port`` answers the documented redirect; ``https_port`` terminates SSL (self-signed)
    and balances round robin over the upstreams; ``/static/`` comes from ``static_root``.
    """

    def __init__(self, directory: Path, upstreams: list[int], static_root: Path) -> None:
        self.directory = directory
        for sub in ("logs", "temp"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        self.http_port, self.https_port = free_port(), free_port()
        cert, key = self_signed_certificate(directory)
        servers = "\n".join(
            f"        server 127.0.0.1:{port} max_fails=0;" for port in upstreams
        )
        temp = directory / "temp"
        temp_paths = "".join(
            f"\n    {kind}_temp_path {temp / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        conf = render_nginx_conf(
            NGINX_CONF.read_text(),
            [
                # root runs workers as root here (the temp dir is root's); others cannot switch user.
                ("user www-data;", "user root;" if os.geteuid() == 0 else ""),
                ("worker_processes auto;", "worker_processes 2;"),
                ("pid /run/nginx.pid;", f"pid {directory / 'nginx.pid'};"),
                (
                    "error_log /var/log/nginx/error.log warn;",
                    f"error_log {directory / 'logs' / 'error.log'} notice;",
                ),
                ("worker_connections 4096;", "worker_connections 1024;"),
                (
                    "access_log /var/log/nginx/access.log;",
                    (
                        "log_format upstream '$request_method $uri $status upstream=$upstream_addr';"
                        f"\n    access_log {directory / 'logs' / 'access.log'} upstream;{temp_paths}"
                    ),
                ),
                (
                    (
                        "        server 127.0.0.1:8001 max_fails=0;\n"
                        "        server 127.0.0.1:8002 max_fails=0;"
                    ),
                    servers,
                ),
                ("listen 80;", f"listen 127.0.0.1:{self.http_port};"),
                ("listen [::]:80;", ""),
                ("listen 443 ssl;", f"listen 127.0.0.1:{self.https_port} ssl;"),
                ("listen [::]:443 ssl;", ""),
                ("/etc/letsencrypt/live/example.com/fullchain.pem", str(cert)),
                ("/etc/letsencrypt/live/example.com/privkey.pem", str(key)),
                ("alias /srv/mysite/staticfiles/;", f"alias {static_root}/;"),
                # Log static requests too: the tests check they never went upstream.
                ("            access_log off;\n", ""),
            ],
        )
        self.conf_path = directory / "nginx.conf"
        self.conf_path.write_text(conf)
        with open(directory / "logs" / "stdout.log", "w") as output:
            self.process = subprocess.Popen(
                [
                    NGINX,
                    "-e",
                    str(directory / "logs" / "error.log"),
                    "-p",
                    str(directory),
                    "-c",
                    str(self.conf_path),
                    "-g",
                    "daemon off;",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            wait_for_port(self.https_port, 10, self.process, "nginx")
            wait_for_port(self.http_port, 10, self.process, "nginx")
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n{self.error_log}") from None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def error_log(self) -> str:
        path = self.directory / "logs" / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def access_log(self) -> str:
        path = self.directory / "logs" / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        stop_process(self.process)


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

#: Accepts the tests' self-signed certificate.
INSECURE_TLS = ssl.create_default_context()
INSECURE_TLS.check_hostname = False
INSECURE_TLS.verify_mode = ssl.CERT_NONE


def http_get(
    url: str, timeout: float = TIMEOUT, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) of a GET, without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=INSECURE_TLS))
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode("utf-8", "replace")


def http_post(url: str, data: dict[str, str], timeout: float = TIMEOUT) -> tuple[int, str]:
    from urllib.parse import urlencode

    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=INSECURE_TLS))
    request = urllib.request.Request(url, data=urlencode(data).encode(), method="POST")
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


_TOKEN = re.compile(r'"token":\s*"([^"]+)"')


def token_in_page(html: str) -> str:
    found = _TOKEN.findall(html)
    assert len(found) == 1, f"expected one session token in the page, found {len(found)}:\n{html[:2000]}"
    return found[0]


async def load_page(base_url: str, app: str, query: str = "") -> tuple[str, str]:
    """GET ``/<app>`` as a browser would; (token, session id) from the page."""
    status, _, html = await asyncio.to_thread(http_get, f"{base_url}/{app}{query}")
    assert status == 200, f"GET {base_url}/{app}{query} gave {status}: {html[:500]}"
    token = token_in_page(html)
    return token, get_session_id(token)


def ws_url(base_url: str, app: str) -> str:
    return base_url.replace("https://", "wss://").replace("http://", "ws://") + f"/{app}/ws"


# ---------------------------------------------------------------------------
# A raw Bokeh client with timeouts and a client-side Document
# ---------------------------------------------------------------------------


class Peer(RawBokehClient):
    """RawBokehClient with a timeout on every receive, plus pull/patch against a local Document."""

    doc: Document | None = None
    url: str = ""

    async def recv(self, seconds: float = TIMEOUT) -> Any:
        return await asyncio.wait_for(super().recv(), seconds)

    async def recv_until(
        self, msgtype: str, limit: int = 20, seconds: float = TIMEOUT
    ) -> tuple[Any, list[Any]]:
        before = []
        for _ in range(limit):
            try:
                message = await self.recv(seconds)
            except TimeoutError:
                raise AssertionError(
                    f"no {msgtype} within {seconds} s on {self.url}"
                    f"{' after ' + str([m.msgtype for m in before]) if before else ''}"
                ) from None
            if message.msgtype == msgtype:
                return message, before
            before.append(message)
        raise AssertionError(f"no {msgtype} within {limit} messages; got {[m.msgtype for m in before]}")

    async def pull(self, limit: int = 20) -> Document:
        """PULL-DOC (skipping up to ``limit`` messages that come first, e.g. other clients' changes)."""
        request = PROTOCOL.create("PULL-DOC-REQ")
        await self.send(request)
        reply, _ = await self.recv_until("PULL-DOC-REPLY", limit=limit)
        assert reply.header["reqid"] == request.header["msgid"]
        self.doc = Document()
        reply.push_to_document(self.doc)
        return self.doc

    def patch(self, change: Callable[[Document], None]) -> Any:
        assert self.doc is not None
        events: list[Any] = []
        self.doc.on_change(events.append)
        try:
            change(self.doc)
        finally:
            self.doc.remove_on_change(events.append)
        return PROTOCOL.create("PATCH-DOC", events)

    async def send_patch(self, change: Callable[[Document], None], seconds: float = TIMEOUT) -> list[Any]:
        """Send a PATCH-DOC; apply what the server sends before its OK; return those messages."""
        patch = self.patch(change)
        await self.send(patch)
        ok, before = await self.recv_until("OK", seconds=seconds)
        assert ok.header["reqid"] == patch.header["msgid"]
        self.apply(before)
        return before

    def apply(self, messages: list[Any]) -> None:
        """Apply the server's PATCH-DOCs among ``messages`` to the local document."""
        for message in messages:
            if message.msgtype == "PATCH-DOC":
                message.apply_to_document(self.doc)

    async def round_trip(self, text: str, seconds: float = TIMEOUT) -> None:
        """echo app: text_input.value = text -> the server's callback sets output.text = TEXT."""
        if self.doc is None:
            await self.pull()
        await self.send_patch(lambda doc: setattr(model(doc, "text_input"), "value", text), seconds)
        assert model(self.doc, "output").text == text.upper()

    async def wait_model(
        self, name: str, attr: str, predicate: Callable[[Any], bool], seconds: float = TIMEOUT
    ) -> Any:
        """Apply server PATCH-DOCs until ``predicate(doc.<name>.<attr>)``; the value."""
        await self.wait_until(
            lambda doc: predicate(getattr(model(doc, name), attr)),
            seconds,
            lambda doc: f"{name}.{attr} is {getattr(model(doc, name), attr)!r}",
        )
        return getattr(model(self.doc, name), attr)

    async def wait_until(
        self,
        predicate: Callable[[Document], bool],
        seconds: float = TIMEOUT,
        state: Callable[[Document], str] = lambda doc: "the condition is still false",
    ) -> None:
        """Apply server PATCH-DOCs until ``predicate(doc)``; AssertionError with ``state(doc)`` after ``seconds``."""
        assert self.doc is not None
        deadline = time.monotonic() + seconds
        while not predicate(self.doc):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{state(self.doc)} after {seconds} s")
            self.apply([await self.recv(left)])

    async def close_info(self, seconds: float) -> tuple[int | None, str | None, float]:
        """Read until the server closes; (code, reason, seconds it took)."""
        start = time.monotonic()
        try:
            async with asyncio.timeout(seconds):
                while True:
                    await self.ws.recv()
        except ConnectionClosed:
            pass
        return self.ws.close_code, self.ws.close_reason, time.monotonic() - start


def model(doc: Document, name: str) -> Any:
    found = doc.get_model_by_name(name)
    assert found is not None, f"no model named {name!r}"
    return found


async def connect(
    base_url: str, token: str | None = None, app: str = "echo", origin: bool = True, **kwargs: Any
) -> Peer:
    """An accepted connection (subprotocol "bokeh", ACK first); Origin as a browser on base_url."""
    url = ws_url(base_url, app)
    if url.startswith("wss://"):
        kwargs.setdefault("ssl", INSECURE_TLS)
    if origin:
        kwargs.setdefault("origin", base_url)
    ws = await websockets.connect(
        url,
        subprotocols=["bokeh", token or make_token()],
        max_size=None,
        open_timeout=TIMEOUT,
        close_timeout=5,
        **kwargs,
    )
    peer = Peer(ws)
    peer.url = url
    assert ws.subprotocol == "bokeh"
    try:
        first = await peer.recv()
    except TimeoutError:
        await ws.close()
        raise AssertionError(
            f"{url} accepted the WebSocket but sent no ACK within {TIMEOUT} s (if the session lives in "
            "another process, the owner's ACK never came back through the relay)"
        ) from None
    assert first.msgtype == "ACK", first.msgtype
    return peer


async def close_all(peers: list[Peer]) -> None:
    for peer in peers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(peer.close(), 5)


# ---------------------------------------------------------------------------
# What the processes did
# ---------------------------------------------------------------------------


#: Seconds a test waits for every worker of a --num-procs server to load its apps.
WORKERS_LOAD_TIMEOUT = 30


class HookLog:
    """The file tests/apps/hooks appends "<event> <pid> <session id>" lines to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_text("")

    def lines(self, event: str) -> list[tuple[int, str]]:
        result = []
        for line in self.path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == event:
                result.append((int(parts[1]), parts[2]))
        return result

    def created(self, event: str = "on_session_created") -> Counter[str]:
        """on_session_created calls (or other ``event`` lines) per session id."""
        return Counter(session_id for _, session_id in self.lines(event))

    def creator_pids(self, session_ids: set[str]) -> Counter[int]:
        return Counter(pid for pid, sid in self.lines("on_session_created") if sid in session_ids)

    async def wait_for_loaded_workers(self, count: int, server: LiveServer) -> None:
        """Until ``count`` processes have run on_server_loaded (at most WORKERS_LOAD_TIMEOUT s):
        with ``--num-procs`` the port answers as soon as one worker runs, while the others may
        still be importing."""
        deadline = time.monotonic() + WORKERS_LOAD_TIMEOUT
        while len({pid for pid, _ in self.lines("on_server_loaded")}) < count:
            assert time.monotonic() < deadline, (
                f"{count} workers did not load within {WORKERS_LOAD_TIMEOUT} s\n{describe(server)}"
            )
            await asyncio.sleep(0.1)


def relayed(server: LiveServer, session_id: str, app: str) -> bool:
    """Whether ``server`` (the edge) relayed a WebSocket of this session to another process."""
    return f"WebSocket for session {session_id!r} of app {app!r} relayed to its owner process" in server.log


def opened_locally(server: LiveServer, session_id: str, app: str) -> bool:
    return f"WebSocket opened for session {session_id!r} of app {app!r}" in server.log


def fresh_token(**kwargs: Any) -> str:
    """An unsigned token for a new session id (the cluster settings do not sign)."""
    return make_token(**kwargs)


def describe(*servers: LiveServer, tail: int = 4000) -> str:
    """The last lines of the servers' logs, for assertion messages."""
    return "\n".join(
        f"--- {server.url} (pid {server.process.pid}) ---\n{server.log[-tail:]}" for server in servers
    )


def json_of(body: str) -> Any:
    return json.loads(body)

"""runbokeh --use-xheaders behind nginx's TLS (docs/deploy/nginx.conf): sessions see the client's view.

nginx terminates TLS and passes the scheme in X-Forwarded-Proto and the client's address in
X-Real-IP / X-Forwarded-For. With --use-xheaders, ``session_context.request`` (read by
tests/apps/request_info.py) says ``https`` and the client's address, for the page's session
and for a session created at WebSocket connect (a bokeh.client-style token). Without the
flag the same requests show the proxy's view: plain ``http`` from nginx's own address.

Each flavour has its own runbokeh process (tests.settings: one process, the in-memory layer,
no Redis) and its own nginx in front of it; all listen on 127.0.0.1 and are stopped by PID.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster.helpers import (
    INSECURE_TLS,
    NGINX,
    Nginx,
    close_all,
    connect,
    describe,
    fresh_token,
    http_get,
    model,
    token_in_page,
)
from tests.live import LiveServer

APP = Path(__file__).resolve().parents[1] / "apps" / "request_info.py"
#: Another loopback address for the client, so that its address differs from nginx's (127.0.0.1).
OTHER_CLIENT = "127.0.0.2"


@dataclass
class Proxied:
    server: LiveServer
    nginx: Nginx


def _start(directory: Path, *flags: str) -> Proxied:
    # The page's origin is nginx's (a free port chosen by Nginx): allow any local port.
    server = LiveServer(str(APP), "--allow-websocket-origin", "127.0.0.1:*", *flags)
    try:
        static_root = directory / "static"
        static_root.mkdir(parents=True)
        nginx = Nginx(directory / "nginx", [server.port], static_root)
    except Exception:
        server.stop()
        raise
    return Proxied(server, nginx)


@pytest.fixture(scope="module")
def proxies(tmp_path_factory) -> Iterator[dict[str, Proxied]]:
    if not os.access(NGINX, os.X_OK):
        pytest.skip(f"{NGINX} is not installed")
    if shutil.which("openssl") is None:
        pytest.skip("openssl (for nginx's test certificate) is not installed")
    started: dict[str, Proxied] = {}
    try:
        started["xheaders"] = _start(tmp_path_factory.mktemp("xheaders"), "--use-xheaders")
        started["plain"] = _start(tmp_path_factory.mktemp("plain"))
        yield started
    finally:
        for proxied in started.values():
            proxied.nginx.stop()
            proxied.server.stop()


def page_token(base_url: str, source: str | None = None) -> str:
    """GET /request_info (through nginx), from ``source`` if given; the page's session token."""
    if source is None:
        status, _, html = http_get(f"{base_url}/request_info")
    else:
        host, port = base_url.removeprefix("https://").split(":")
        conn = http.client.HTTPSConnection(host, int(port), timeout=10, context=INSECURE_TLS,
                                           source_address=(source, 0))
        try:
            conn.request("GET", "/request_info")
            response = conn.getresponse()
            status, html = response.status, response.read().decode()
        finally:
            conn.close()
    assert status == 200, f"GET {base_url}/request_info gave {status}: {html[:500]}"
    return token_in_page(html)


async def seen(base_url: str, token: str, source: str | None = None) -> tuple[str, str]:
    """(protocol, remote_ip) that the session of ``token`` saw, over wss through nginx."""
    kwargs = {"local_addr": (source, 0)} if source else {}
    peer = await connect(base_url, token, app="request_info", **kwargs)
    try:
        doc = await peer.pull()
        return model(doc, "protocol").text, model(doc, "remote_ip").text
    finally:
        await close_all([peer])


def both_sessions(proxied: Proxied, source: str | None = None) -> dict[str, tuple[str, str]]:
    """What the page's session and a session created at WebSocket connect saw."""
    url = proxied.nginx.url
    token = page_token(url, source)
    return {
        "page": asyncio.run(seen(url, token, source)),
        "websocket": asyncio.run(seen(url, fresh_token(), source)),
    }


def _context(proxied: Proxied) -> str:
    return f"{describe(proxied.server)}\nnginx:\n{proxied.nginx.error_log[-2000:]}"


def test_with_xheaders_sessions_see_https_and_the_client(proxies) -> None:
    proxied = proxies["xheaders"]
    assert both_sessions(proxied) == {"page": ("https", "127.0.0.1"), "websocket": ("https", "127.0.0.1")}, (
        _context(proxied)
    )


def test_without_xheaders_sessions_see_the_proxy(proxies) -> None:
    proxied = proxies["plain"]
    # daphne sees nginx's plain-HTTP connection from 127.0.0.1.
    assert both_sessions(proxied) == {"page": ("http", "127.0.0.1"), "websocket": ("http", "127.0.0.1")}, (
        _context(proxied)
    )


def test_the_address_is_the_clients_not_nginxs(proxies) -> None:
    """A client on another loopback address: only --use-xheaders reports it (nginx connects from 127.0.0.1)."""
    try:
        page_token(proxies["plain"].nginx.url, OTHER_CLIENT)
    except OSError as exc:
        pytest.skip(f"cannot connect from {OTHER_CLIENT}: {exc}")
    assert both_sessions(proxies["xheaders"], OTHER_CLIENT) == {
        "page": ("https", OTHER_CLIENT), "websocket": ("https", OTHER_CLIENT),
    }, _context(proxies["xheaders"])
    assert both_sessions(proxies["plain"], OTHER_CLIENT) == {
        "page": ("http", "127.0.0.1"), "websocket": ("http", "127.0.0.1"),
    }, _context(proxies["plain"])


def test_a_client_cannot_claim_another_address_through_nginx(proxies) -> None:
    """nginx sets X-Real-IP and X-Scheme itself and appends to X-Forwarded-For: a client's own
    headers do not win (without nginx's X-Scheme, a client's "X-Scheme: http" would)."""
    url = proxies["xheaders"].nginx.url
    status, _, html = http_get(f"{url}/request_info", headers={
        "X-Real-IP": "203.0.113.9", "X-Forwarded-For": "203.0.113.9", "X-Scheme": "http",
    })
    assert status == 200
    assert asyncio.run(seen(url, token_in_page(html))) == ("https", "127.0.0.1")

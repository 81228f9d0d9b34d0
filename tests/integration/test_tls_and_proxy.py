"""runbokeh --ssl-certfile (HTTPS and WSS served directly) and --use-xheaders (behind a proxy), live.

Each test talks to a real runbokeh process: the page over HTTP(S), then the Bokeh protocol
over the WebSocket, and reads what app code saw in ``session_context.request`` from the
document (tests/apps/request_info.py), both for the page's session and for a session
created at WebSocket connect.
"""

from __future__ import annotations

import asyncio
import re
import signal
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from bokeh.document import Document

from tests.bokeh_client import PROTOCOL, RawBokehClient, frames_of, make_token
from tests.live import LiveServer, live_server

APP = Path(__file__).resolve().parents[1] / "apps" / "request_info.py"


def certificate_for_loopback(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate valid for 127.0.0.1 and localhost (subjectAltName, so clients verify it)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


def get(url: str, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None) -> str:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=20, context=context) as response:
        assert response.status == 200
        return response.read().decode()


def token_of(html: str) -> str:
    return re.search(r'"token":"([^"]+)"', html).group(1)


async def request_seen(ws_url: str, token: str, **connect: object) -> tuple[str, str]:
    """(protocol, remote_ip) of the session ``token`` names, read from its document."""
    client = await RawBokehClient.connect(ws_url, token, open_timeout=20, **connect)
    try:
        assert (await asyncio.wait_for(client.recv(), 20)).msgtype == "ACK"
        await client.send_frames(*frames_of(PROTOCOL.create("PULL-DOC-REQ")))
        reply = await asyncio.wait_for(client.recv_type("PULL-DOC-REPLY"), 20)
        document = Document()
        reply.push_to_document(document)
        return document.get_model_by_name("protocol").text, document.get_model_by_name("remote_ip").text
    finally:
        await client.close()


# ---------------------------------------------------------------------------
# --ssl-certfile / --ssl-keyfile / BOKEH_SSL_PASSWORD
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    return certificate_for_loopback(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def trusting(certificate) -> ssl.SSLContext:
    """A client context that trusts only our certificate (hostname checked too)."""
    return ssl.create_default_context(cafile=str(certificate[0]))


@pytest.fixture(scope="module")
def tls_server(certificate) -> Iterator[LiveServer]:
    cert, key = certificate
    # The key with a password, as BOKEH_SSL_PASSWORD serves it (no ssl: endpoint option exists for it).
    encrypted = key.with_name("encrypted-key.pem")
    subprocess.run(["openssl", "pkey", "-in", str(key), "-aes256", "-passout", "pass:s3cret", "-out", str(encrypted)],
                   check=True, capture_output=True, timeout=30)
    server = LiveServer(str(APP), "--ssl-certfile", str(cert), "--ssl-keyfile", str(encrypted),
                        env={"BOKEH_SSL_PASSWORD": "s3cret"})
    yield server
    server.stop()


def test_https_page_and_wss_session(tls_server, trusting) -> None:
    html = get(f"{tls_server.url}/request_info", context=trusting)
    wss = f"wss://127.0.0.1:{tls_server.port}/request_info/ws"
    assert asyncio.run(request_seen(wss, token_of(html), ssl=trusting)) == ("https", "127.0.0.1")
    # A session created at WebSocket connect: its request is the upgrade, over TLS.
    assert asyncio.run(request_seen(wss, make_token(), ssl=trusting)) == ("https", "127.0.0.1")
    assert f"https://localhost:{tls_server.port}/request_info" in tls_server.log


def test_plain_http_is_not_served_on_the_tls_port(tls_server) -> None:
    with pytest.raises(OSError):
        get(tls_server.url.replace("https://", "http://") + "/request_info")


@pytest.mark.browser
def test_chromium_opens_the_app_over_https_and_wss(tls_server) -> None:
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    from tests.browser.helpers import CHROMIUM, CHROMIUM_ARGS, RECORD_SOCKETS_JS, RENDERED_JS

    with sync_playwright() as playwright:
        # The certificate is self-signed, which Chromium would refuse without this flag.
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=[*CHROMIUM_ARGS, "--ignore-certificate-errors"])
        try:
            page = browser.new_page()
            page.add_init_script(RECORD_SOCKETS_JS)
            page.goto(f"{tls_server.url}/request_info")
            page.wait_for_function(RENDERED_JS, arg=1, timeout=20_000)
            protocol = page.evaluate("Bokeh.documents[0].get_model_by_name('protocol').text")
            sockets = page.evaluate("window.__bk_sockets.map((s) => [s.url, s.socket.readyState])")
        finally:
            browser.close()
    assert protocol == "https"
    assert sockets == [[f"wss://127.0.0.1:{tls_server.port}/request_info/ws", 1]]  # 1: OPEN


async def drain_close_of(server: LiveServer, ws_url: str, context: ssl.SSLContext) -> tuple[int | None, str]:
    """Open a session, SIGTERM the server: (code, reason) of the close frame, or (None, "") without one."""
    from websockets.exceptions import ConnectionClosed

    client = await RawBokehClient.connect(ws_url, make_token(), open_timeout=20, ssl=context)
    assert (await asyncio.wait_for(client.recv(), 20)).msgtype == "ACK"
    server.process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(15):
            while True:
                await client.ws.recv()
    except ConnectionClosed as closed:
        return (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (None, "")


@pytest.mark.parametrize("app", ["request_info", "busy_on_destroy"])
def test_sigterm_drain_sends_close_frames_over_tls(certificate, trusting, app) -> None:
    """The drain (BokehDaphneServer) still closes with 1001 and a reason when TLS wraps the transports.

    It once lost the close frame in about 1 run of 5: autobahn's close handshake timeout
    (1 s, fired 0-1 s after the frame by its batched timer) aborted the connection while the
    frame still sat in the TLS transport's write aggregator, because the drain kept the loop
    busy after queueing it. ``busy_on_destroy`` keeps it busy past that timeout every time.
    """
    cert, key = certificate
    server = LiveServer(str(APP), str(APP.with_name("busy_on_destroy.py")), "--ssl-certfile", str(cert),
                        "--ssl-keyfile", str(key), "--drain-timeout", "1")
    try:
        code, reason = asyncio.run(drain_close_of(server, f"wss://127.0.0.1:{server.port}/{app}/ws", trusting))
        assert code == 1001, f"no close frame (code {code}):\n{server.log}"
        assert reason
        assert server.process.wait(15) == 0
    finally:
        server.stop()


# ---------------------------------------------------------------------------
# --use-xheaders
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def proxied_server() -> Iterator[LiveServer]:
    server = LiveServer(str(APP), "--use-xheaders")
    yield server
    server.stop()


def ws_url(server: LiveServer) -> str:
    return server.url.replace("http://", "ws://") + "/request_info/ws"


def test_xheaders_reach_the_page_session(proxied_server) -> None:
    # A client-sent first entry, then the address the nearest proxy appended (nginx's
    # $proxy_add_x_forwarded_for): the last one counts, as under bokeh serve.
    html = get(f"{proxied_server.url}/request_info",
               headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.7", "X-Forwarded-Proto": "https"})
    assert asyncio.run(request_seen(ws_url(proxied_server), token_of(html))) == ("https", "203.0.113.7")


def test_xheaders_reach_a_session_created_at_websocket_connect(proxied_server) -> None:
    headers = {"X-Real-Ip": "198.51.100.4", "X-Forwarded-For": "203.0.113.7", "X-Scheme": "https"}
    seen = asyncio.run(request_seen(ws_url(proxied_server), make_token(), additional_headers=headers))
    assert seen == ("https", "198.51.100.4")


def test_without_the_flag_the_headers_are_ignored(tls_server, trusting) -> None:
    # tls_server runs without --use-xheaders: a client cannot claim another address or scheme.
    html = get(f"{tls_server.url}/request_info", headers={"X-Real-Ip": "198.51.100.4", "X-Scheme": "http"},
               context=trusting)
    wss = f"wss://127.0.0.1:{tls_server.port}/request_info/ws"
    assert asyncio.run(request_seen(wss, token_of(html), ssl=trusting)) == ("https", "127.0.0.1")


# ---------------------------------------------------------------------------
# --websocket-compression-level / --websocket-compression-mem-level
# ---------------------------------------------------------------------------


async def negotiated_extensions(url: str) -> list[str]:
    """The extensions of a Bokeh WebSocket (websockets offers permessage-deflate), after a round trip."""
    client = await RawBokehClient.connect(url, make_token(), open_timeout=20)
    try:
        assert (await asyncio.wait_for(client.recv(), 20)).msgtype == "ACK"
        await client.send_frames(*frames_of(PROTOCOL.create("PULL-DOC-REQ")))
        reply = await asyncio.wait_for(client.recv_type("PULL-DOC-REPLY"), 20)
        assert reply.content["doc"]["roots"]
        return [extension.name for extension in client.ws.protocol.extensions]
    finally:
        await client.close()


def test_compression_is_negotiated_only_when_asked(proxied_server) -> None:
    assert asyncio.run(negotiated_extensions(ws_url(proxied_server))) == []  # Tornado's default: off
    with live_server(str(APP), "--websocket-compression-level", "9", "--websocket-compression-mem-level", "5") as server:
        assert asyncio.run(negotiated_extensions(ws_url(server))) == ["permessage-deflate"]

"""WebSocket origins and hosts: refusals on the upgrade (HTTP 403) with a log line saying how to
allow the origin, and an embed from another port working in Chromium when allowed."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from bokeh.embed import server_document
from websockets.exceptions import InvalidStatus

from bokehserve_django import signing
from tests.bokeh_client import make_token
from tests.live import LiveServer, free_port
from tests.security.helpers import ECHO_RENDERED_JS, client_for, opens, token_in, wait_for, websocket

TIMEOUT = 20
EVIL = "http://evil.example"


# ---------------------------------------------------------------------------
# A real server that allows one extra origin: the embedding page's
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embed_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def live(embed_port: int) -> Iterator[LiveServer]:
    """tests.settings' apps (signing off), allowing only the embedding page's origin."""
    server = LiveServer("--allow-websocket-origin", f"127.0.0.1:{embed_port}")
    yield server
    server.stop()


def upgrade_status(live: LiveServer, *, origin: str | None, host: str | None = None) -> int:
    """The HTTP status of a WebSocket upgrade to /echo/ws (101 when accepted)."""

    async def attempt() -> int:
        uri = f"ws://{host or f'127.0.0.1:{live.port}'}/echo/ws"
        sock = socket.create_connection(("127.0.0.1", live.port))
        try:
            async with websockets.connect(uri, sock=sock, origin=origin, subprotocols=["bokeh", make_token()],
                                          open_timeout=TIMEOUT):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    return asyncio.run(attempt())


def test_disallowed_origin_gets_403_on_the_upgrade_and_a_log_line_saying_how_to_allow_it(live) -> None:
    assert upgrade_status(live, origin=EVIL) == 403
    refusals = [line for line in live.log.splitlines() if "evil.example" in line]
    assert refusals, live.log
    assert "--allow-websocket-origin=evil.example" in refusals[-1]
    assert "ALLOWED_ORIGINS" in refusals[-1]
    assert "Traceback" not in live.log


def test_allowed_origin_and_no_origin_get_through(live, embed_port) -> None:
    assert upgrade_status(live, origin=f"http://127.0.0.1:{embed_port}") == 101
    assert upgrade_status(live, origin=None) == 101  # bokeh.client and other non-browser clients


def test_server_own_address_is_not_allowed_once_an_origin_is_given(live) -> None:
    """As bokeh serve: --allow-websocket-origin replaces the default (the served address)."""
    assert upgrade_status(live, origin=f"http://127.0.0.1:{live.port}") == 403


def test_dns_rebinding_origin_equal_to_host_is_refused(live) -> None:
    """A rebound name sends Origin == Host (Tornado lets that through); the Host must be in ALLOWED_HOSTS."""
    host = f"evil.example:{live.port}"
    assert upgrade_status(live, origin=f"http://{host}", host=host) == 403
    assert "is not in ALLOWED_HOSTS" in live.log


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("origin", "accepted"), [
    (b"http://127.0.0.1", True), (b"http://evil.example", False), (b"null", False),
    (b"http://127.0.0.1.evil.example", False), (b"http://localhost", True),
])
async def test_origins_in_process(origin, accepted, fresh_runtime) -> None:
    """The consumer's check (no ALLOWED_ORIGINS: the origin's host must be in ALLOWED_HOSTS)."""
    token = signing.generate_token(signing.generate_session_id())
    async with websocket("echo", token, headers=[(b"origin", origin), (b"host", b"127.0.0.1")]) as communicator:
        assert await opens(communicator) is accepted


# ---------------------------------------------------------------------------
# autoload.js and CORS
# ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_autoload_does_not_hand_a_signed_in_users_token_to_a_disallowed_origin(users, fresh_runtime) -> None:
    """autoload.js answers an XHR; with the user's cookie (SameSite=None, or a same-site sibling
    host) its response holds a signed token bound to that user. A disallowed origin must not be
    able to read it: if it could, it would replay the token from a non-browser client (no Origin
    header, so no origin check) and act as the user."""
    client = await client_for(users["carol"])
    response = await client.get("/perm/autoload.js", {"bokeh-autoload-element": "x"},
                                headers={"Origin": EVIL})
    assert response.status_code == 200
    credentialed_read = (response.get("Access-Control-Allow-Origin") == EVIL
                         and response.get("Access-Control-Allow-Credentials") == "true")
    assert not credentialed_read, (
        "autoload.js lets http://evil.example read a response made with carol's cookies; it holds "
        f"a token bound to her: {token_in(response.content.decode())[:40]}..."
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("origin", "credentials"), [("http://localhost", True), (EVIL, False), (None, False)])
async def test_autoload_cors(origin, credentials, users, fresh_runtime) -> None:
    """Any page may load an embed without credentials (``*``); an allowed origin (here: a host in
    ALLOWED_HOSTS) may also send cookies (``server_document(..., with_credentials=True)``)."""
    client = await client_for(users["carol"])
    headers = {"Origin": origin} if origin else {}
    response = await client.get("/perm/autoload.js", {"bokeh-autoload-element": "x"}, headers=headers)
    if credentials:
        assert response["Access-Control-Allow-Origin"] == origin
        assert response["Access-Control-Allow-Credentials"] == "true"
        assert "Origin" in response["Vary"]
    else:
        assert response["Access-Control-Allow-Origin"] == "*"
        assert "Access-Control-Allow-Credentials" not in response


# ---------------------------------------------------------------------------
# Chromium: an embedding page on another port
# ---------------------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def static_site(directory: Path, port: int) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1:``port`` from a thread."""
    handler = functools.partial(_Quiet, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def embed_site(live, embed_port, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """The same embedding page on the allowed port and on a port the server does not allow."""
    directory = tmp_path_factory.mktemp("embed")
    script = server_document(f"{live.url}/echo")
    from bokeh.settings import settings as bokeh_env_settings

    (directory / "favicon.ico").write_bytes(Path(bokeh_env_settings.ico_path()).read_bytes())
    (directory / "index.html").write_text(
        f"<!doctype html><html><head><title>embed</title></head><body><h1>Embedded</h1>{script}</body></html>"
    )
    with static_site(directory, embed_port) as allowed, static_site(directory, free_port()) as refused:
        yield allowed, refused


@pytest.mark.browser
def test_embed_from_an_allowed_origin_renders_and_round_trips(live, embed_site, watch) -> None:
    allowed, _refused = embed_site
    response = watch.page.goto(f"{allowed}/index.html")
    assert response is not None and response.status == 200
    watch.wait_js(ECHO_RENDERED_JS, timeout=15_000, what="the embedded app to render")
    watch.set("text_input", "value", "hello from another port")
    watch.wait_prop("output", "text", "HELLO FROM ANOTHER PORT")
    watch.assert_clean()


@pytest.mark.browser
def test_embed_from_a_disallowed_origin_gets_no_session(live, embed_site, watch) -> None:
    _allowed, refused = embed_site
    port = refused.rsplit(":", 1)[1]
    watch.page.goto(f"{refused}/index.html")
    hint = f"--allow-websocket-origin=127.0.0.1:{port}"
    assert wait_for(lambda: hint in live.log), "the server logged no refusal of the embedding origin"
    # Whatever BokehJS does next (it retries), no document arrives.
    watch.page.wait_for_timeout(1_000)
    assert watch.page.evaluate("() => !window.Bokeh || Bokeh.documents.length === 0")

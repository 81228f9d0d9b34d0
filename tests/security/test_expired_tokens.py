"""Pages that outlive their session token (bokeh#14416), against a real runbokeh process.

The server gives tokens a 5 s lifetime and reaps sessions 3 s after their last connection.
BokehJS reconnects with the page's original token, so once that token has expired:

- a page whose session still exists gets it back, with its state, if the connection is the
  token's user (the signed-in carol here);
- a page whose session was reaped is closed with 4010, and recover.js reloads it into a fresh
  page (new session, new token);
- an expired token never creates a session, and another user's cookie gets nothing with it.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator

import pytest
import websockets
from bokeh.util.token import get_session_id, get_token_payload
from django.test import Client

from bokehserve_django import signing
from bokehserve_django.cluster import PAGE_TOKEN_KEY
from tests.live import LiveServer
from tests.security.helpers import ECHO_RENDERED_JS, token_in

#: Seconds a token lives on this server.
TOKEN_LIFETIME = 5

#: A page's WebSockets (as tests/browser/helpers.RECORD_SOCKETS_JS), and a switch that sends
#: new ones to a closed port instead, as if the network were down.
RECORD_AND_BLOCK_SOCKETS_JS = """(() => {
    const Native = window.WebSocket;
    window.__bk_sockets = [];
    window.__block_sockets = false;
    window.WebSocket = class extends Native {
        constructor(url, protocols) {
            super(window.__block_sockets ? "ws://127.0.0.1:9/blocked" : url, protocols);
            window.__bk_sockets.push({socket: this, url: String(url), protocols: protocols});
        }
    };
})();"""


@pytest.fixture(scope="module")
def live(django_db_setup, django_db_blocker) -> Iterator[LiveServer]:
    server = LiveServer(
        "--session-token-expiration", str(TOKEN_LIFETIME),
        "--unused-session-lifetime", "3000", "--check-unused-sessions", "500",
        settings="tests.security.settings",
    )
    yield server
    server.stop()


@pytest.fixture
def sync_orm_beside_playwright(monkeypatch) -> None:
    """Let the browser tests use the ORM (users, sessions) although sync Playwright marks its
    loop as running in this thread: nothing else runs on that loop meanwhile. Request it
    before ``users``, so that it also covers the database flush after the test."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def session_cookie(user) -> str:
    """The sessionid of a Django session signed in as ``user`` (stored in the database the server reads)."""
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def page_token(live: LiveServer, app: str, cookie: str) -> str:
    """The token of ``/<app>`` fetched from the live server as the user of ``cookie``."""
    request = urllib.request.Request(f"{live.url}/{app}", headers={"Cookie": f"sessionid={cookie}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return token_in(response.read().decode())


def wait_until_expired(token: str) -> None:
    """Block until ``token``'s session_expiry has passed (a clock condition, bounded by the lifetime)."""
    expiry = get_token_payload(token)["session_expiry"]
    deadline = time.monotonic() + TOKEN_LIFETIME + 5
    while time.time() <= expiry + 0.2:
        assert time.monotonic() < deadline, "the token never expired"
        time.sleep(0.1)


def wait_for_log(live: LiveServer, text: str, count: int = 1, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while live.log.count(text) < count:
        assert time.monotonic() < deadline, f"the server never logged {text!r} {count} time(s):\n{live.log[-3000:]}"
        time.sleep(0.1)


#: tests/apps/whoami.py behind the "login" policy: a TextInput ("lookup") whose Python callback
#: answers in a Div ("found"), and no binary buffers in the document.
PAGE_APP = "whoami_login"


def open_signed_in_page(watch, live: LiveServer, cookie: str, app: str = PAGE_APP) -> str:
    """Load ``/<app>`` in the browser as the user of ``cookie``; return the page's token."""
    page = watch.page
    page.context.add_cookies([{"name": "sessionid", "value": cookie, "url": live.url}])
    page.add_init_script(RECORD_AND_BLOCK_SOCKETS_JS)
    response = page.goto(f"{live.url}/{app}")
    assert response is not None and response.status == 200
    assert response.headers.get("cache-control") == "no-store"
    watch.wait_js(ECHO_RENDERED_JS, timeout=15_000, what="BokehJS to render the page")
    return token_in(page.content())


def round_trip(watch, username: str) -> None:
    watch.set("lookup", "value", username)
    watch.wait_prop("found", "text", f"{username}: {'exists' if username in ('carol', 'bob') else 'unknown'}")


async def _connect(live: LiveServer, app: str, token: str, cookie: str | None = None):
    headers = {"Cookie": f"sessionid={cookie}"} if cookie else {}
    return await websockets.connect(
        live.url.replace("http", "ws") + f"/{app}/ws", subprotocols=["bokeh", token],
        additional_headers=headers, open_timeout=10,
    )


async def _first_message_type(ws) -> str:
    header = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return header["msgtype"]


async def _close_of(ws) -> tuple[int | None, str | None]:
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    return ws.close_code, ws.close_reason


@pytest.mark.django_db(transaction=True)  # with the others: pytest-django runs non-db tests last, after Playwright
async def test_an_expired_token_never_creates_a_session(live, security_settings) -> None:
    """Signed with the server's key, but for a session the server never had: no app code runs."""
    session_id = signing.generate_session_id()
    page_token = signing.generate_token(session_id, extra_payload={PAGE_TOKEN_KEY: True}, expiration=-10)
    ws = await _connect(live, "public", page_token)
    code, reason = await _close_of(ws)
    assert code == 4010, (code, reason)
    assert "reload the page" in reason
    # bokeh.client-style tokens (not made by a page request) get no grace at all.
    client_token = signing.generate_token(signing.generate_session_id(), expiration=-10)
    with pytest.raises(websockets.InvalidStatus) as refused:
        await _connect(live, "public", client_token)
    assert refused.value.response.status_code == 403
    assert "Token is expired" in live.log
    assert f"WebSocket opened for session {session_id!r}" not in live.log


@pytest.mark.django_db(transaction=True)
async def test_another_users_cookie_gets_nothing_with_an_expired_token(live, security_settings, users) -> None:
    from asgiref.sync import sync_to_async

    carol, bob = await sync_to_async(session_cookie)(users["carol"]), await sync_to_async(session_cookie)(users["bob"])
    token = await asyncio.to_thread(page_token, live, "login", carol)
    # carol keeps her session alive while her token expires.
    held = await _connect(live, "login", token, carol)
    assert await _first_message_type(held) == "ACK"
    await asyncio.to_thread(wait_until_expired, token)

    with pytest.raises(websockets.InvalidStatus) as refused:
        await _connect(live, "login", token, bob)
    assert refused.value.response.status_code == 403
    assert "this connection is not its user's" in live.log

    # The same expired token with carol's own cookie reaches her session.
    again = await _connect(live, "login", token, carol)
    assert await _first_message_type(again) == "ACK"
    await again.close()
    await held.close()


@pytest.mark.browser
def test_a_page_past_its_token_expiry_survives_a_cut_connection(sync_orm_beside_playwright, live, watch, users) -> None:
    page = watch.page
    token = open_signed_in_page(watch, live, session_cookie(users["carol"]))
    session_id = get_session_id(token)
    round_trip(watch, "before-expiry")
    wait_until_expired(token)

    with page.expect_console_message(lambda message: "Reconnected websocket" in message.text, timeout=10_000):
        page.evaluate("() => window.__bk_sockets[0].socket.close()")
    sockets = page.evaluate("() => window.__bk_sockets.map((s) => s.protocols)")
    assert sockets == [["bokeh", token], ["bokeh", token]], "BokehJS reconnected with another token"

    # The re-pulled document is the old session's, and its callbacks still answer.
    assert watch.get("lookup", "value") == "before-expiry"
    assert watch.get("found", "text") == "before-expiry: unknown"
    assert watch.get("user", "text") == "carol"
    round_trip(watch, "carol")
    assert f"WebSocket for session {session_id!r} of app {PAGE_APP!r} reconnects with a token that expired" in live.log
    watch.assert_clean()


@pytest.mark.browser
def test_a_page_whose_session_was_reaped_comes_back_as_a_fresh_page(sync_orm_beside_playwright, live, watch, users) -> None:
    page = watch.page
    loads: list[float] = []
    page.on("load", lambda _: loads.append(time.monotonic()))
    token = open_signed_in_page(watch, live, session_cookie(users["carol"]))
    round_trip(watch, "old-state")
    wait_until_expired(token)
    page.evaluate("() => { window.__before_reload = true }")

    discarded = live.log.count("Discarded")
    # The network "goes down": BokehJS's retries fail until the server has reaped the session.
    page.evaluate("() => { window.__block_sockets = true; window.__bk_sockets[0].socket.close() }")
    wait_for_log(live, "Discarded", discarded + 1)
    page.evaluate("() => { window.__block_sockets = false }")

    # BokehJS's next retry (2, 4 or 8 s after the cut) meets 4010; recover.js reloads 1.5 s later.
    deadline = time.monotonic() + 30
    while len(loads) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert len(loads) == 2, f"the page did not reload (loads: {len(loads)})\n{watch.report()}\n{live.log[-3000:]}"
    page.wait_for_load_state("load")
    assert page.evaluate("() => window.__before_reload === undefined")
    watch.wait_js(ECHO_RENDERED_JS, timeout=15_000, what="BokehJS to render the reloaded page")
    new_token = token_in(page.content())
    assert get_session_id(new_token) != get_session_id(token)
    # A fresh session: the app's initial state, not the old one's, and it works.
    assert watch.get("lookup", "value") == ""
    assert watch.get("user", "text") == "carol"
    round_trip(watch, "bob")
    old_session = get_session_id(token)
    assert f"WebSocket for session {old_session!r} of app {PAGE_APP!r}: the session is gone" in live.log
    # The old session was opened once (the first page) and never again: nothing recreated it.
    assert live.log.count(f"WebSocket opened for session {old_session!r}") == 1

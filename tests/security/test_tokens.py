"""Bad session ids and tokens never create or reach a session, on the WebSocket or the page.

Signing is on (tests/security/settings.py). Each bad token is offered at the WebSocket
(``["bokeh", token]``), as ``?bokeh-token=`` on the page and on autoload.js; each bad id as
``?bokeh-session-id=`` and as the ``Bokeh-Session-Id`` header. The proof that nothing was
created: the app's live sessions stay at zero and its on_session_created hook never runs
(tests/apps/hooks writes every call to $BOKEHSERVE_TEST_HOOK_LOG). A good token and a good
id, offered the same ways, do create exactly one session: the checks are not vacuous.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import zlib
from collections.abc import Callable

import pytest
from bokeh.util.token import generate_jwt_token, generate_session_id, get_session_id
from django.test import AsyncClient

from bokehserve_django import signing
from bokehserve_django.sessions import runtime
from tests.security.helpers import opens, token_in, websocket

APP = "hooks"
OTHER_KEY = b"another-site-key-0123456789abcdefghijklmnopqrstuvwxyz"


# ---------------------------------------------------------------------------
# Building tokens by hand (bokeh's format: b64url(json) [ "." b64url(hmac) ])
# ---------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hmac_b64(key: bytes, text: str) -> str:
    return b64(hmac.new(key, text.encode(), hashlib.sha256).digest())


def key() -> bytes:
    return signing.secret_key()


def good_id() -> str:
    return generate_session_id(secret_key=key(), signed=True)


def good_token() -> str:
    return generate_jwt_token(good_id(), secret_key=key(), signed=True, expiration=300)


def hand_signed(payload: dict) -> str:
    """A token with a correct HMAC over whatever ``payload`` we choose."""
    first = b64(json.dumps(payload).encode())
    return f"{first}.{hmac_b64(key(), first)}"


def altered_expiry() -> str:
    first, signature = good_token().split(".")
    payload = json.loads(unb64(first))
    payload["session_expiry"] += 10**6
    return f"{b64(json.dumps(payload).encode())}.{signature}"


def altered_session_id() -> str:
    first, signature = good_token().split(".")
    payload = json.loads(unb64(first))
    payload["session_id"] = good_id()  # another properly signed id
    return f"{b64(json.dumps(payload).encode())}.{signature}"


def zlib_bomb(signature: str = "x" * 43) -> str:
    """A token of ~30 KB whose extra payload would inflate to 16 MiB (the cap is 1 MiB)."""
    bomb = zlib.compress(b'{"a": "' + b"0" * (16 * 2**20) + b'"}', 9)
    payload = {"session_id": good_id(), "session_expiry": int(time.time()) + 300, "__bk__zlib_": b64(bomb)}
    return f"{b64(json.dumps(payload).encode())}.{signature}"


BAD_TOKENS: dict[str, Callable[[], str]] = {
    "garbage": lambda: "not-a-token",
    "empty-json": lambda: b64(b"{}"),
    "unsigned-when-signing-is-on": lambda: generate_jwt_token(
        generate_session_id(signed=False), secret_key=None, signed=False),
    "unsigned-id-in-signed-token": lambda: generate_jwt_token(
        generate_session_id(signed=False), secret_key=key(), signed=True),
    "wrongly-signed": lambda: generate_jwt_token(
        generate_session_id(secret_key=OTHER_KEY, signed=True), secret_key=OTHER_KEY, signed=True),
    "good-id-token-signed-with-other-key": lambda: generate_jwt_token(
        good_id(), secret_key=OTHER_KEY, signed=True),
    "forged-signature": lambda: good_token().split(".")[0] + "." + b64(b"\0" * 32),
    "truncated-signature": lambda: good_token()[:-4],
    "signature-dropped": lambda: good_token().split(".")[0],
    "altered-expiry": altered_expiry,
    "altered-session-id": altered_session_id,
    "expired": lambda: generate_jwt_token(good_id(), secret_key=key(), signed=True, expiration=-1),
    "no-expiry": lambda: hand_signed({"session_id": good_id()}),
    "malformed-session-id": lambda: hand_signed(
        {"session_id": "../../" + "x" * 10, "session_expiry": time.time() + 300}),
    "zlib-bomb-with-forged-signature": zlib_bomb,
}

BAD_IDS: dict[str, Callable[[], str]] = {
    "unsigned": lambda: generate_session_id(signed=False),
    "wrongly-signed": lambda: generate_session_id(secret_key=OTHER_KEY, signed=True),
    "altered": lambda: good_id()[:-2] + ("AA" if not good_id().endswith("AA") else "BB"),
    "signature-of-another-id": lambda: generate_session_id(signed=False) + "." + good_id().split(".")[1],
    "malformed": lambda: "<script>alert(1)</script>",
    "too-long": lambda: "a" * 5000,
}


def created(hook_log) -> tuple[int, int]:
    """(live sessions of the app, on_session_created calls so far)."""
    return len(runtime.app(APP).sessions), len(hook_log("on_session_created"))


# ---------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_bad_token_is_refused_at_the_websocket(kind, fresh_runtime, hook_log) -> None:
    async with websocket(APP, BAD_TOKENS[kind]()) as communicator:
        assert not await opens(communicator)
    assert created(hook_log) == (0, 0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("where", ["page", "autoload.js"])
@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_bad_token_is_refused_on_the_page(kind, where, fresh_runtime, hook_log) -> None:
    path = f"/{APP}" if where == "page" else f"/{APP}/autoload.js"
    response = await AsyncClient().get(path, {"bokeh-token": BAD_TOKENS[kind](), "bokeh-autoload-element": "x"})
    assert response.status_code == 403
    assert b"Traceback" not in response.content
    assert created(hook_log) == (0, 0)


@pytest.mark.django_db(transaction=True)
async def test_good_token_creates_one_session_at_the_websocket(fresh_runtime, hook_log) -> None:
    token = good_token()
    async with websocket(APP, token) as communicator:
        assert await opens(communicator)
        assert created(hook_log) == (1, 1)
        assert hook_log("on_session_created") == [get_session_id(token)]


@pytest.mark.django_db(transaction=True)
async def test_good_token_works_on_the_page_and_the_websocket_reuses_its_session(fresh_runtime, hook_log) -> None:
    token = good_token()
    response = await AsyncClient().get(f"/{APP}", {"bokeh-token": token})
    assert response.status_code == 200
    assert created(hook_log) == (1, 1)
    async with websocket(APP, token_in(response.content.decode())) as communicator:
        assert await opens(communicator)
    assert created(hook_log) == (1, 1)


@pytest.mark.django_db(transaction=True)
async def test_zlib_bomb_is_refused_without_inflating_it_even_unsigned(security_settings, fresh_runtime,
                                                                        hook_log, caplog) -> None:
    security_settings.BOKEHSERVE = {**security_settings.BOKEHSERVE, "SIGN_SESSIONS": False}
    token = zlib_bomb(signature="")[:-1]
    assert len(token) < signing.MAX_TOKEN_LENGTH
    started = time.perf_counter()
    async with websocket(APP, token) as communicator:
        assert not await opens(communicator)
    assert time.perf_counter() - started < 2
    assert created(hook_log) == (0, 0)
    assert "Token payload is too large" in caplog.text


@pytest.mark.django_db(transaction=True)
async def test_oversized_token_is_refused(fresh_runtime, hook_log) -> None:
    token = good_token() + "A" * signing.MAX_TOKEN_LENGTH
    async with websocket(APP, token) as communicator:
        assert not await opens(communicator)
    assert created(hook_log) == (0, 0)


# ---------------------------------------------------------------------------
# Session ids named by the page request
# ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["query", "header", "autoload-header"])
@pytest.mark.parametrize("kind", list(BAD_IDS))
async def test_bad_session_id_is_refused(kind, how, fresh_runtime, hook_log) -> None:
    session_id = BAD_IDS[kind]()
    client = AsyncClient()
    if how == "query":
        response = await client.get(f"/{APP}", {"bokeh-session-id": session_id})
    elif how == "header":
        response = await client.get(f"/{APP}", headers={"Bokeh-Session-Id": session_id})
    else:
        response = await client.get(f"/{APP}/autoload.js", {"bokeh-autoload-element": "x"},
                                    headers={"Bokeh-Session-Id": session_id})
    assert response.status_code == 403
    assert created(hook_log) == (0, 0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["query", "header"])
async def test_good_session_id_creates_that_session(how, fresh_runtime, hook_log) -> None:
    session_id = good_id()
    client = AsyncClient()
    if how == "query":
        response = await client.get(f"/{APP}", {"bokeh-session-id": session_id})
    else:
        response = await client.get(f"/{APP}", headers={"Bokeh-Session-Id": session_id})
    assert response.status_code == 200
    assert hook_log("on_session_created") == [session_id]
    assert get_session_id(token_in(response.content.decode())) == session_id


@pytest.mark.django_db(transaction=True)
async def test_more_than_one_way_of_naming_a_session_is_refused(fresh_runtime, hook_log) -> None:
    response = await AsyncClient().get(f"/{APP}", {"bokeh-session-id": good_id(), "bokeh-token": good_token()})
    assert response.status_code == 403
    assert created(hook_log) == (0, 0)


# ---------------------------------------------------------------------------
# The user bound into a token is trusted only when tokens are signed
# ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_user_claim_in_an_unsigned_token_is_ignored(security_settings, users, fresh_runtime) -> None:
    """With signing off, anyone could write {"bokehserve_user": <carol's pk>} into a token."""
    security_settings.BOKEHSERVE = {**security_settings.BOKEHSERVE, "SIGN_SESSIONS": False}
    claim = {"bokehserve_user": str(users["carol"].pk), "bokehserve_issued": time.time()}
    token = generate_jwt_token(generate_session_id(signed=False), secret_key=None, signed=False,
                               extra_payload=claim)
    async with websocket("perm", token) as communicator:
        assert not await opens(communicator)
    assert len(runtime.app("perm").sessions) == 0


@pytest.mark.django_db(transaction=True)
async def test_user_claim_in_a_signed_token_is_honoured(users, fresh_runtime) -> None:
    """The counterpart: the same claim, signed with the site's key, lets carol's embed in."""
    claim = {"bokehserve_user": str(users["carol"].pk), "bokehserve_issued": time.time()}
    token = signing.generate_token(signing.generate_session_id(), extra_payload=claim)
    async with websocket("perm", token) as communicator:
        assert await opens(communicator)
    assert runtime.app("perm").sessions[0].context.user == users["carol"]


# ---------------------------------------------------------------------------
# A good id from a Django view (generate_session_id + server_session) in Chromium
# ---------------------------------------------------------------------------


@pytest.mark.browser
def test_signed_session_id_from_a_django_view_works_in_chromium(security_live, watch) -> None:
    """tests/security/urls.py embedded_session: generate_session_id() -> session_script() (server_session)."""
    import re

    from tests.security.helpers import ECHO_RENDERED_JS

    response = watch.page.goto(f"{security_live.url}/django/embedded-session")
    assert response is not None and response.status == 200
    session_id = re.search(r'"Bokeh-Session-Id", "([^"]+)"', watch.page.content()).group(1)
    assert "." in session_id  # signed: id "." signature
    watch.wait_js(ECHO_RENDERED_JS, timeout=15_000, what="the embedded session to render")
    watch.set("text_input", "value", "signed")
    watch.wait_prop("output", "text", "SIGNED")
    watch.assert_clean()
    # The browser is in the very session the view named (the server logs the id at WebSocket open).
    assert f"WebSocket opened for session {session_id!r}" in security_live.log

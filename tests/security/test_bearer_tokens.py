"""Headless clients as Django users: bearer tokens from ``manage.py bokeh_token``, against a real runbokeh.

carol may open "perm" (auth.view_user) and "whoami_login"; bob may open "whoami_login" but not
"perm". Scripts use ``bokehserve_django.client.pull_session(url, bearer_token=...)``, which
sends the token on the autoload.js request and on the WebSocket upgrade.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import time
import urllib.error
import urllib.request

import jwt
import pytest
import websockets
from bokeh.util.token import get_token_payload
from django.core.management import CommandError, call_command
from django.test import Client

from bokehserve_django import bearer, security, signing
from bokehserve_django.client import HeadlessClientError, pull_session
from bokehserve_django.models import BearerToken
from bokehserve_django.sessions import runtime
from tests.live import LiveServer
from tests.security.helpers import token_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def live(django_db_setup, security_live: LiveServer) -> LiveServer:
    """The run's tests.security.settings server (conftest), asked for after the test database
    exists: the server reads the users these tests create from that file."""
    return security_live


def issue(user, **kwargs) -> str:
    return bearer.issue_token(user, **kwargs)[0]


def http_get(url: str, token: str | None) -> tuple[int, str, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


async def ws_outcome(live: LiveServer, app: str, session_token: str, bearer_token: str):
    """("refused", HTTP status) or ("closed", code, reason) or ("open", first message type)."""
    url = live.url.replace("http", "ws") + f"/{app}/ws"
    try:
        ws = await websockets.connect(url, subprotocols=["bokeh", session_token], open_timeout=10,
                                      additional_headers={"Authorization": f"Bearer {bearer_token}"})
    except websockets.InvalidStatus as exc:
        return ("refused", exc.response.status_code)
    try:
        await asyncio.wait_for(ws.recv(), 10)
    except websockets.ConnectionClosed:
        return ("closed", ws.close_code, ws.close_reason)
    await ws.close()
    return ("open", None)


def fresh_session_token() -> str:
    """A token for a new session, signed with the server's key, bound to nobody (as bokeh.client's)."""
    return signing.generate_token(signing.generate_session_id())


def wait_closed(session, timeout: float = 10) -> None:
    """Run the client's loop until the server closes the session, at most ``timeout`` seconds."""
    loop = session._connection.io_loop
    stop = loop.call_later(timeout, loop.stop)
    session._connection._loop_until(lambda: not session.connected)
    loop.remove_timeout(stop)


def test_the_allowed_user_gets_in_as_themselves(live, security_settings, users) -> None:
    token = issue(users["carol"])
    with pull_session(f"{live.url}/whoami_login", bearer_token=token) as session:
        assert session.document.get_model_by_name("user").text == "carol"
    with pull_session(f"{live.url}/perm", bearer_token=token) as session:
        assert session.document.get_model_by_name("text_input") is not None
    assert asyncio.run(ws_outcome(live, "perm", fresh_session_token(), token)) == ("open", None)
    status, body, _ = http_get(f"{live.url}/perm", token)
    assert status == 200 and "Bokeh.embed.embed_items" in body
    assert token not in body


def test_the_wrong_user_gets_403_on_every_path(live, security_settings, users) -> None:
    token = issue(users["bob"])
    assert http_get(f"{live.url}/perm", token)[0] == 403
    status, body, _ = http_get(f"{live.url}/perm/autoload.js?bokeh-autoload-element=x", token)
    assert status == 403 and "You do not have access" in body
    assert http_get(f"{live.url}/perm/metadata", token)[0] == 403
    assert asyncio.run(ws_outcome(live, "perm", fresh_session_token(), token)) == ("refused", 403)
    with pytest.raises(HeadlessClientError, match="403.*You do not have access"):
        pull_session(f"{live.url}/perm", bearer_token=token)
    # Positive control: the same token opens an app bob may use.
    with pull_session(f"{live.url}/whoami_login", bearer_token=token) as session:
        assert session.document.get_model_by_name("user").text == "bob"


def test_expired_revoked_and_other_apps_tokens_are_refused_with_a_reason(live, security_settings, users) -> None:
    token, row = bearer.issue_token(users["carol"])
    claims = jwt.decode(token, options={"verify_signature": False})
    expired = jwt.encode({**claims, "exp": int(time.time()) - 10}, bearer.signing_key(), algorithm="HS256")
    status, body, headers = http_get(f"{live.url}/whoami_login", expired)
    assert status == 401 and "has expired" in body
    assert headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    outcome = asyncio.run(ws_outcome(live, "whoami_login", fresh_session_token(), expired))
    assert outcome[:2] == ("closed", 4011) and "has expired" in outcome[2]

    assert bearer.revoke_token(row.jti)
    with pytest.raises(HeadlessClientError, match=f"401.*{row.jti} was revoked"):
        pull_session(f"{live.url}/whoami_login", bearer_token=token)
    outcome = asyncio.run(ws_outcome(live, "whoami_login", fresh_session_token(), token))
    assert outcome[:2] == ("closed", 4011) and "revoked" in outcome[2]

    only_perm = issue(users["carol"], app_name="perm")
    status, body, _ = http_get(f"{live.url}/whoami_login", only_perm)
    assert status == 401 and "not for app 'whoami_login'" in body
    assert http_get(f"{live.url}/perm", only_perm)[0] == 200
    forged = jwt.encode({**claims, "sub": str(users["bob"].pk)}, "not-the-key-" * 4, algorithm="HS256")
    status, body, _ = http_get(f"{live.url}/whoami_login", forged)
    assert status == 401 and "not valid here" in body


def sign_out_at(live: LiveServer, user) -> None:
    """Sign ``user`` out through the live server's logout view (its process hears user_logged_out)."""
    client = Client()
    client.force_login(user)
    csrf = "a" * 32
    request = urllib.request.Request(
        f"{live.url}/accounts/logout/", data=b"", method="POST",
        headers={"Cookie": f"sessionid={client.cookies['sessionid'].value}; csrftoken={csrf}", "X-CSRFToken": csrf},
    )
    try:
        urllib.request.urlopen(request, timeout=10).read()
    except urllib.error.HTTPError as exc:
        assert exc.code in (301, 302), exc.read()


def test_signing_out_closes_the_headless_session_and_voids_the_token(live, security_settings, users) -> None:
    token = issue(users["carol"])
    bob_token = issue(users["bob"])
    session = pull_session(f"{live.url}/whoami_login", bearer_token=token)
    bobs = pull_session(f"{live.url}/whoami_login", bearer_token=bob_token)
    sign_out_at(live, users["carol"])
    wait_closed(session)
    assert not session.connected
    assert (session.close_code, session.close_reason) == (4008, "Signed out")
    with pytest.raises(HeadlessClientError, match="revoked"):
        pull_session(f"{live.url}/whoami_login", bearer_token=token)
    # bob's session and token are untouched.
    assert bobs.connected
    bobs.force_roundtrip()
    bobs.close()
    with pull_session(f"{live.url}/whoami_login", bearer_token=bob_token) as again:
        assert again.document.get_model_by_name("user").text == "bob"


async def test_the_bearer_token_never_reaches_a_session_token(security_settings, users, fresh_runtime) -> None:
    """Even with Authorization listed in INCLUDE_HEADERS (W007 territory)."""
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    security_settings.BOKEHSERVE = {**security_settings.BOKEHSERVE, "INCLUDE_HEADERS": ["Authorization", "X-Team"]}
    token = await sync_to_async(issue)(users["carol"])
    response = await AsyncClient().get(
        "/whoami_login/autoload.js", {"bokeh-autoload-element": "x"},
        headers={"Authorization": f"Bearer {token}", "X-Team": "blue"},
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert token not in text
    payload = get_token_payload(token_in(text))
    assert payload["headers"] == {"X-Team": "blue"}
    (session,) = runtime.app("whoami_login").sessions
    assert "Authorization" not in session.context.request.headers
    assert session.context.user.username == "carol"
    assert security.filter_headers({"Authorization": f"Bearer {token}", "X-Team": "blue"}) == {"X-Team": "blue"}


def test_bokeh_token_command_issues_and_revokes(security_settings, users) -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command("bokeh_token", "carol", "--app", "perm", "--ttl", "120", stdout=out, stderr=err)
    token = out.getvalue().strip()
    claims = jwt.decode(token, bearer.signing_key(), algorithms=["HS256"], audience=bearer.audience("perm"))
    assert claims["sub"] == str(users["carol"].pk) and claims["exp"] - claims["iat"] == 120
    assert claims["aud"] == "urn:bokehserve:localhost:app:perm"
    row = BearerToken.objects.get(jti=claims["jti"])
    assert row.app == "perm" and row.revoked_at is None and claims["jti"] in err.getvalue()
    assert row.expires_at - row.issued_at == datetime.timedelta(seconds=120)

    call_command("bokeh_token", "--revoke", claims["jti"], stderr=io.StringIO())
    assert BearerToken.objects.get(jti=claims["jti"]).revoked_at is not None
    with pytest.raises(CommandError, match="No unrevoked bearer token"):
        call_command("bokeh_token", "--revoke", claims["jti"])
    with pytest.raises(CommandError, match="No user 'nobody'"):
        call_command("bokeh_token", "nobody")
    with pytest.raises(CommandError, match="No Bokeh app 'nope' is registered"):
        call_command("bokeh_token", "carol", "--app", "nope")
    with pytest.raises(CommandError, match="--ttl must be a positive"):
        call_command("bokeh_token", "carol", "--ttl", "0")


def test_the_admin_action_revokes_tokens(security_settings, users) -> None:
    from django.contrib.admin.sites import site
    from django.contrib.auth.models import User
    from django.test import RequestFactory

    tokens = [bearer.issue_token(users["carol"])[1], bearer.issue_token(users["bob"])[1]]
    model_admin = site._registry[BearerToken]
    request = RequestFactory().post("/admin/")
    request.user = User.objects.create_superuser("root")
    request._messages = type("Messages", (), {"add": lambda *args, **kwargs: None})()
    model_admin.revoke(request, BearerToken.objects.filter(jti=tokens[0].jti))
    assert BearerToken.objects.get(jti=tokens[0].jti).revoked_at is not None
    assert BearerToken.objects.get(jti=tokens[1].jti).revoked_at is None


async def test_other_systems_bearer_tokens_are_ignored(security_settings, users, fresh_runtime) -> None:
    """An API token or an OAuth proxy's JWT in Authorization is not ours to refuse: the cookie decides."""
    from django.test import AsyncClient

    from tests.security.helpers import client_for

    foreign = jwt.encode({"sub": "1", "aud": "https://api.example.com", "exp": int(time.time()) - 5}, "k" * 32, algorithm="HS256")
    carol = await client_for(users["carol"])
    for value in ("Bearer opaque-api-token", f"Bearer {foreign}", "Bearer", "Basic Y2Fyb2w6eA=="):
        response = await carol.get("/whoami_login", headers={"Authorization": value})
        assert response.status_code == 200, value
    response = await AsyncClient().get("/whoami_login", headers={"Authorization": f"Bearer {foreign}"})
    assert response.status_code == 302  # anonymous: to the login page, not a 401

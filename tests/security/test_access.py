"""Who gets into a session, on every path into one: a table of apps x users x paths.

Apps (tests/security/settings.py POLICIES, all serving tests/apps/echo.py): "public";
"login"; "perm" = {"permissions": ["auth.view_user"]}; "group" = {"groups": ["analysts"]};
"callable" = a callable(user, request) that lets in only alice.
Users (conftest ``users``): anonymous; bob (signed in, no permission, group "others");
carol (auth.view_user, group "analysts"); alice (no permission or group).

Paths: the page; autoload.js; metadata; a WebSocket with the user's Django session cookie
and a token made here (no page first); a WebSocket with the token from the page HTML (for a
user the app refuses: the token of a page they may see, the public app's); the same without
the cookie (an embed on another origin: the user bound into the signed token is all the
server has); and bokeh.client against a live server (no cookie: anonymous).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from django.test import AsyncClient

from bokehserve_django import signing
from bokehserve_django.embed import pull_session
from bokehserve_django.sessions import runtime
from tests.live import LiveServer
from tests.security.helpers import client_for, cookie_header, opens, token_in, websocket

#: Who may open sessions of each app.
# fmt: off
ACCESS = {
    #            anonymous bob    carol  alice
    "public":   (True,     True,  True,  True),
    "login":    (False,    True,  True,  True),
    "perm":     (False,    False, True,  False),
    "group":    (False,    False, True,  False),
    "callable": (False,    False, False, True),
}
# fmt: on
USERS = ("anonymous", "bob", "carol", "alice")


def allowed(app: str, user: str) -> bool:
    return ACCESS[app][USERS.index(user)]


# ---------------------------------------------------------------------------
# One function per path: what the user gets. Outcomes are compared with the table.
# ---------------------------------------------------------------------------


async def page(client: AsyncClient, app: str) -> Any:
    response = await client.get(f"/{app}")
    if response.status_code == 302:
        return 302, response["Location"]
    return response.status_code


async def autoload(client: AsyncClient, app: str) -> Any:
    response = await client.get(f"/{app}/autoload.js", {"bokeh-autoload-element": "x"})
    return response.status_code


async def metadata(client: AsyncClient, app: str) -> Any:
    response = await client.get(f"/{app}/metadata")
    if response.status_code == 200:
        assert response.json()["url"] == f"/{app}"
    return response.status_code


async def ws_without_page(client: AsyncClient, app: str) -> bool:
    token = signing.generate_token(signing.generate_session_id())
    async with websocket(app, token, cookie=cookie_header(client)) as communicator:
        return await opens(communicator)


async def token_from_a_page(client: AsyncClient, app: str) -> str:
    """The token of the app's page if the user may see it, else of the public app's page."""
    response = await client.get(f"/{app}")
    if response.status_code != 200:
        response = await client.get("/public")
        assert response.status_code == 200
    return token_in(response.content.decode())


async def ws_after_page(client: AsyncClient, app: str) -> bool:
    token = await token_from_a_page(client, app)
    async with websocket(app, token, cookie=cookie_header(client)) as communicator:
        return await opens(communicator)


async def ws_embed_no_cookie(client: AsyncClient, app: str) -> bool:
    token = await token_from_a_page(client, app)
    headers = [(b"origin", b"http://localhost"), (b"host", b"127.0.0.1")]
    async with websocket(app, token, headers=headers) as communicator:
        return await opens(communicator)


PATHS = {
    "page": page,
    "autoload.js": autoload,
    "metadata": metadata,
    "ws": ws_without_page,
    "ws-after-page": ws_after_page,
    "ws-embed": ws_embed_no_cookie,
}


def expected(path: str, app: str, user: str) -> Any:
    ok = allowed(app, user)
    if path == "page":
        if ok:
            return 200
        return (302, f"/accounts/login/?next=/{app}") if user == "anonymous" else 403
    if path in ("autoload.js", "metadata"):
        return 200 if ok else 403
    return ok


CASES = [
    pytest.param(path, app, user, id=f"{path}-{app}-{user}-{'in' if allowed(app, user) else 'out'}")
    for path in PATHS
    for app in ACCESS
    for user in USERS
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("path", "app", "user"), CASES)
async def test_who_gets_in(path: str, app: str, user: str, users, fresh_runtime) -> None:
    client = await client_for(users[user])
    outcome = await PATHS[path](client, app)
    assert outcome == expected(path, app, user)
    # A refused request creates no session of the app; an allowed one exactly one (metadata none).
    sessions = len(runtime.app(app).sessions)
    if path == "metadata" or not allowed(app, user):
        assert sessions == 0
    else:
        assert sessions == 1


# ---------------------------------------------------------------------------
# bokeh.client: no Django cookie, so anonymous; against a real server
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("app", [pytest.param(a, id=f"bokeh.client-{a}-anonymous-{'in' if allowed(a, 'anonymous') else 'out'}")
                                 for a in ACCESS])
def test_bokeh_client_is_anonymous(app: str, security_live: LiveServer, security_settings) -> None:
    live = security_live
    """pull_session signs its token with this process's settings (the live server's: signing on)."""
    if allowed(app, "anonymous"):
        with pull_session(None, app, url=f"{live.url}/{app}") as session:
            assert session.document.get_model_by_name("text_input") is not None
    else:
        with pytest.raises(Exception, match="403"):
            pull_session(None, app, url=f"{live.url}/{app}")
        assert f"Refused WebSocket for app {app!r}" in live.log


# ---------------------------------------------------------------------------
# A session belongs to the user it was opened for
# ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_another_user_cannot_join_a_users_session_by_its_id(users, fresh_runtime) -> None:
    """carol's session id leaks (a shared ?bokeh-session-id= link, a Referer, a log line); bob, who
    may use the app, must not get a token for carol's session, whose document was personalised
    for carol (session_context.user is carol; apps filter ORM queries by it)."""
    from bokeh.util.token import get_session_id

    carol = await client_for(users["carol"])
    response = await carol.get("/login")
    assert response.status_code == 200
    carol_session_id = get_session_id(token_in(response.content.decode()))

    bob = await client_for(users["bob"])
    response = await bob.get("/login", {"bokeh-session-id": carol_session_id})
    assert response.status_code == 403, (
        "bob was given a token for carol's session: "
        f"session_context.user of the session he reaches is {runtime.app('login').get(carol_session_id).context.user}"
    )


@pytest.mark.django_db(transaction=True)
async def test_another_user_cannot_use_a_users_token(users, fresh_runtime) -> None:
    """carol's token (say, lifted by an XSS) offered with bob's own cookie reaches no session of hers."""
    carol = await client_for(users["carol"])
    token = token_in((await carol.get("/login")).content.decode())
    bob = await client_for(users["bob"])
    async with websocket("login", token, cookie=cookie_header(bob)) as communicator:
        assert not await opens(communicator)


@pytest.mark.django_db(transaction=True)
async def test_the_owner_rejoins_and_sessions_without_a_user_stay_shareable(users, fresh_runtime) -> None:
    """carol may reopen her own session by id; a session opened without a user (an anonymous
    visitor, or bokeh.client in the pull_session + server_session recipe) is open to whoever
    the site hands its id to, as in bokeh serve."""
    from bokeh.util.token import get_session_id

    carol = await client_for(users["carol"])
    carol_id = get_session_id(token_in((await carol.get("/login")).content.decode()))
    assert (await carol.get("/login", {"bokeh-session-id": carol_id})).status_code == 200

    anonymous_id = get_session_id(token_in((await AsyncClient().get("/public")).content.decode()))
    bob = await client_for(users["bob"])
    response = await bob.get("/public", {"bokeh-session-id": anonymous_id})
    assert response.status_code == 200
    assert get_session_id(token_in(response.content.decode())) == anonymous_id


# ---------------------------------------------------------------------------
# Caps on live sessions per user
# ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_sessions_per_user_are_capped_and_other_users_are_not_affected(security_settings, users,
                                                                             fresh_runtime) -> None:
    security_settings.BOKEHSERVE = {**security_settings.BOKEHSERVE, "MAX_SESSIONS_PER_USER": 2}
    bob = await client_for(users["bob"])
    assert [(await bob.get("/login")).status_code for _ in range(2)] == [200, 200]
    assert (await bob.get("/login")).status_code == 403
    token = signing.generate_token(signing.generate_session_id())
    async with websocket("login", token, cookie=cookie_header(bob)) as communicator:
        assert not await opens(communicator)
    carol = await client_for(users["carol"])
    assert (await carol.get("/login")).status_code == 200
    assert len(runtime.app("login").sessions) == 3


@pytest.mark.django_db(transaction=True)
async def test_parallel_opens_cannot_slip_past_the_per_user_cap(security_settings, users, fresh_runtime) -> None:
    # Each open runs its app code off the loop: before the cap counted sessions being
    # created, all six passed a check in which none of the others had been counted yet.
    security_settings.BOKEHSERVE = {**security_settings.BOKEHSERVE, "MAX_SESSIONS_PER_USER": 2}
    bob = await client_for(users["bob"])
    statuses = [r.status_code for r in await asyncio.gather(*(bob.get("/login") for _ in range(6)))]
    assert sorted(statuses) == [200, 200, 403, 403, 403, 403], statuses
    assert len(runtime.app("login").sessions) == 2


@pytest.mark.django_db(transaction=True)
async def test_process_cap_answers_503_with_retry_after_and_counts_parallel_opens(
    security_settings, fresh_runtime, caplog
) -> None:
    security_settings.BOKEHSERVE = {**security_settings.BOKEHSERVE, "MAX_SESSIONS": 3}
    client = AsyncClient()
    with caplog.at_level(logging.INFO):
        responses = await asyncio.gather(*(client.get("/public") for _ in range(6)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 503, 503, 503]
    # One INFO line each, saying why; not Django's "Service Unavailable" at ERROR as well.
    refusals = [r for r in caplog.records if "MAX_SESSIONS" in r.getMessage()]
    assert len(refusals) == 3 and {r.levelno for r in refusals} == {logging.INFO}
    assert [r for r in caplog.records if r.name == "django.request"] == []
    refused = next(r for r in responses if r.status_code == 503)
    assert refused["Retry-After"].isdigit() and b"MAX_SESSIONS" in refused.content
    assert len(runtime.app("public").sessions) == 3
    # A WebSocket asking for a new session is accepted, then closed with 1001 and the reason.
    token = signing.generate_token(signing.generate_session_id())
    async with websocket("public", token) as communicator:
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        closed = await communicator.receive_output(timeout=10)
        assert closed["type"] == "websocket.close" and closed["code"] == 1001 and "MAX_SESSIONS" in closed["reason"]


# ---------------------------------------------------------------------------
# CSRF: nothing is exempt from Django's CSRF protection
# ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/public", "/public/autoload.js?bokeh-autoload-element=x", "/public/metadata"])
async def test_posts_without_a_csrf_token_are_refused(path, users, fresh_runtime) -> None:
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(users["carol"])
    response = await client.post(path)
    assert response.status_code == 403
    assert b"CSRF" in response.content
    assert len(runtime.app("public").sessions) == 0

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

from typing import Any

import pytest
from django.test import AsyncClient

from bokehserve_django import signing
from bokehserve_django.embed import pull_session
from bokehserve_django.sessions import runtime
from tests.live import LiveServer
from tests.security.helpers import client_for, cookie_header, opens, token_in, websocket

#: Who may open sessions of each app.
ACCESS = {
    #            anonymous bob    carol  alice
    "public":   (True,     True,  True,  True),
    "login":    (False,    True,  True,  True),
    "perm":     (False,    False, True,  False),
    "group":    (False,    False, True,  False),
    "callable": (False,    False, False, True),
}
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


@pytest.fixture(scope="module")
def live():
    server = LiveServer(settings="tests.security.settings")
    yield server
    server.stop()


@pytest.mark.parametrize("app", [pytest.param(a, id=f"bokeh.client-{a}-anonymous-{'in' if allowed(a, 'anonymous') else 'out'}")
                                 for a in ACCESS])
def test_bokeh_client_is_anonymous(app: str, live: LiveServer, security_settings) -> None:
    """pull_session signs its token with this process's settings (the live server's: signing on)."""
    if allowed(app, "anonymous"):
        with pull_session(None, app, url=f"{live.url}/{app}") as session:
            assert session.document.get_model_by_name("text_input") is not None
    else:
        with pytest.raises(Exception, match="403"):
            pull_session(None, app, url=f"{live.url}/{app}")
        assert f"Refused WebSocket for app {app!r}" in live.log

"""A callable access policy gets one request type, AccessRequest, on every path into an app.

The app "recorded" (tests/apps/echo.py) is guarded by a predicate that records what it is
called with and lets in requests carrying ``?team=red``: the page, autoload.js, metadata
and the WebSocket opened with the page's token all reach it with the same fields.
"""

from __future__ import annotations

from typing import Any

import pytest

from bokehserve_django import registry
from bokehserve_django.access import AccessRequest
from bokehserve_django.sessions import runtime
from tests.security import settings as security
from tests.security.helpers import client_for, cookie_header, opens, token_in, websocket

#: (user, request) of every call of the predicate, in order.
CALLS: list[tuple[Any, Any]] = []


def red_team(user: Any, request: AccessRequest) -> bool:
    """Lets in signed-in users whose request's app arguments say team=red."""
    CALLS.append((user, request))
    return bool(user.is_authenticated) and request.arguments.get("team") == ("red",)


@pytest.fixture
def recorded_app(security_settings):
    CALLS.clear()
    security_settings.BOKEHSERVE = {
        **security.BOKEHSERVE,
        "APPS": {**security.BOKEHSERVE["APPS"], "recorded": {"app": security.TEST_APPS / "echo.py", "access": red_team}},
    }
    registry.reset()
    yield
    CALLS.clear()
    registry.reset()


@pytest.mark.django_db(transaction=True)
async def test_the_predicate_gets_an_access_request_on_every_path(recorded_app, users, fresh_runtime) -> None:
    alice = users["alice"]
    client = await client_for(alice)
    page = await client.get("/recorded", {"team": "red"}, headers={"X-Team-Header": "on-the-page"})
    assert page.status_code == 200
    assert (await client.get("/recorded/autoload.js", {"bokeh-autoload-element": "x", "team": "red"})).status_code == 200
    assert (await client.get("/recorded/metadata", {"team": "red"})).status_code == 200
    async with websocket("recorded", token_in(page.content.decode()), cookie=cookie_header(client)) as communicator:
        assert await opens(communicator)

    assert [type(request) for _, request in CALLS] == [AccessRequest] * 4
    assert [(request.transport, request.path) for _, request in CALLS] == [
        ("http", "/recorded"), ("http", "/recorded/autoload.js"), ("http", "/recorded/metadata"), ("websocket", "/recorded/ws"),
    ]
    for user, request in CALLS:
        assert user.pk == request.user.pk == alice.pk
        assert request.app_name == "recorded"
        assert request.method == "GET"
        # The Host header as sent: Django's test client says "testserver", tests.security.helpers.websocket 127.0.0.1.
        assert request.host == ("testserver" if request.transport == "http" else "127.0.0.1")
        # The WebSocket carries no query string: its app arguments are the page's, from the token.
        assert dict(request.arguments) == {"team": ("red",)}
        assert "sessionid" in request.cookies
    assert CALLS[0][1].headers["x-team-header"] == "on-the-page"
    assert CALLS[3][1].headers["Origin"] == "http://127.0.0.1"
    # The page's session (the WebSocket joined it) and autoload.js's.
    assert len(runtime.app("recorded").sessions) == 2


@pytest.mark.django_db(transaction=True)
async def test_the_predicate_refuses_on_http_and_on_the_websocket(recorded_app, users, fresh_runtime) -> None:
    client = await client_for(users["alice"])
    assert (await client.get("/recorded", {"team": "blue"})).status_code == 403
    # A token of another app's page carries team=blue; the WebSocket is refused by the same predicate.
    public_page = await client.get("/public", {"team": "blue"})
    async with websocket("recorded", token_in(public_page.content.decode()), cookie=cookie_header(client)) as communicator:
        assert not await opens(communicator)
    assert [(request.transport, dict(request.arguments)) for _, request in CALLS] == [
        ("http", {"team": ("blue",)}), ("websocket", {"team": ("blue",)}),
    ]
    assert len(runtime.app("recorded").sessions) == 0

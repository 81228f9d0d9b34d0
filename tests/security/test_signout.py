"""Signing out or being deactivated closes that user's live Bokeh sessions within a second
(close code 4008, on_session_destroyed runs) and refuses their older tokens; another user's
sessions stay and keep working.

carol holds two sessions of "hooks_login" (tests/apps/hooks, access "login"): one WebSocket
with her Django session cookie, one without (an embed on another origin, her user bound into
the signed page token). bob holds one. Then carol signs out one of three ways.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest
from asgiref.sync import sync_to_async
from bokeh.protocol import Protocol
from bokeh.util.token import get_session_id
from channels.testing import WebsocketCommunicator
from django.contrib.auth.signals import user_logged_out

from bokehserve_django import signing
from bokehserve_django.protocol import CloseCode
from bokehserve_django.sessions import runtime
from tests.security.helpers import TIMEOUT, client_for, cookie_header, opens, token_in, websocket

APP = "hooks_login"
PROTOCOL = Protocol()
EMBED_HEADERS = [(b"origin", b"http://localhost"), (b"host", b"127.0.0.1")]


async def sign_out(how: str, user, client) -> None:
    if how == "signal":
        await sync_to_async(user_logged_out.send)(sender=type(user), request=None, user=user)
    elif how == "logout-view":
        response = await client.post("/accounts/logout/")
        assert response.status_code == 302
    elif how == "deactivated":
        user.is_active = False
        await user.asave()
    else:
        raise AssertionError(how)


async def next_close(communicator: WebsocketCommunicator, within: float) -> dict:
    """Skip frames until the server closes (fails after ``within`` seconds)."""
    deadline = time.monotonic() + within
    while True:
        output = await communicator.receive_output(max(deadline - time.monotonic(), 0.01))
        if output["type"] == "websocket.close":
            return output


async def round_trip(communicator: WebsocketCommunicator) -> None:
    """PULL-DOC-REQ -> PULL-DOC-REPLY (the session still answers)."""
    request = PROTOCOL.create("PULL-DOC-REQ")
    for frame in (request.header_json, request.metadata_json, request.content_json):
        await communicator.send_to(text_data=frame)
    header = json.loads(await communicator.receive_from(TIMEOUT))
    await communicator.receive_from(TIMEOUT)
    await communicator.receive_from(TIMEOUT)
    assert header["msgtype"] == "PULL-DOC-REPLY"
    assert header["reqid"] == request.header["msgid"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["signal", "logout-view", "deactivated"])
async def test_sign_out_closes_that_users_sessions_only(how, users, fresh_runtime, hook_log) -> None:
    carol_client = await client_for(users["carol"])
    bob_client = await client_for(users["bob"])
    response = await carol_client.get(f"/{APP}")
    assert response.status_code == 200
    carol_page_token = token_in(response.content.decode())
    async with contextlib.AsyncExitStack() as stack:
        carol_ws = await stack.enter_async_context(websocket(
            APP, signing.generate_token(signing.generate_session_id()), cookie=cookie_header(carol_client)))
        carol_embed = await stack.enter_async_context(websocket(APP, carol_page_token, headers=EMBED_HEADERS))
        bob_ws = await stack.enter_async_context(websocket(
            APP, signing.generate_token(signing.generate_session_id()), cookie=cookie_header(bob_client)))
        for communicator in (carol_ws, carol_embed, bob_ws):
            assert await opens(communicator)
        sessions = {s.context.user.username: s.id for s in runtime.app(APP).sessions}
        assert len(runtime.app(APP).sessions) == 3 and set(sessions) == {"carol", "bob"}
        bob_session = next(s.id for s in runtime.app(APP).sessions if s.context.user.username == "bob")
        carol_sessions = {s.id for s in runtime.app(APP).sessions if s.context.user.username == "carol"}

        started = time.monotonic()
        await sign_out(how, users["carol"], carol_client)
        for communicator in (carol_ws, carol_embed):
            close = await next_close(communicator, within=1.0)
            assert close.get("code") == CloseCode.ACCESS_REVOKED
        elapsed = time.monotonic() - started
        assert elapsed < 1.0

        # The hooks run in the app-code pool after the close frames went out: give them a moment.
        for _ in range(100):  # at most 2 s
            if set(hook_log("document_on_session_destroyed")) == carol_sessions:
                break
            await asyncio.sleep(0.02)
        assert set(hook_log("on_session_destroyed")) == carol_sessions
        assert set(hook_log("document_on_session_destroyed")) == carol_sessions
        assert [s.id for s in runtime.app(APP).sessions] == [bob_session]
        await round_trip(bob_ws)

    # Afterwards: carol's page token (issued before she signed out) opens nothing...
    async with websocket(APP, carol_page_token, headers=EMBED_HEADERS) as communicator:
        assert not await opens(communicator)
    # ... nor, unless only the signal was sent (her Django session is intact then), her cookie.
    async with websocket(APP, signing.generate_token(signing.generate_session_id()),
                         cookie=cookie_header(carol_client)) as communicator:
        assert await opens(communicator) is (how == "signal")
    assert get_session_id(carol_page_token) not in runtime.app(APP)


@pytest.mark.django_db(transaction=True)
async def test_signing_in_again_gives_working_tokens(users, fresh_runtime) -> None:
    """Revocation refuses tokens issued before the sign-out, not the ones issued after it."""
    carol = users["carol"]
    await sync_to_async(user_logged_out.send)(sender=type(carol), request=None, user=carol)
    client = await client_for(carol)
    response = await client.get(f"/{APP}")
    async with websocket(APP, token_in(response.content.decode()), headers=EMBED_HEADERS) as communicator:
        assert await opens(communicator)

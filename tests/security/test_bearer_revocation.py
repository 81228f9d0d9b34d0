"""Revoking one bearer token by its jti closes the sessions its WebSockets opened, and only those.

carol opens "hooks_login" (tests/apps/hooks, access "login") three ways: with bearer token
T1, with bearer token T2, and in a browser (her Django session cookie); bob with his token
T3. Revoking T1 closes T1's session (code 4008, a reason saying what to do; the app's
on_session_destroyed runs) and leaves the other three working. In process: the revocation's
broadcast goes through the in-memory channel layer, as an admin action in the server's
process does (tests/cluster/test_bearer_revocation.py covers other processes, over Redis).
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from asgiref.sync import sync_to_async

from bokehserve_django import bearer, signing
from bokehserve_django.models import BearerToken
from bokehserve_django.protocol import CloseCode
from bokehserve_django.sessions import runtime
from tests.security.helpers import SITE_HEADERS, TIMEOUT, client_for, cookie_header, opens, websocket
from tests.security.test_signout import next_close, round_trip

APP = "hooks_login"


def with_bearer(token: str) -> list[tuple[bytes, bytes]]:
    """What bokehserve_django.client sends on the upgrade: the site's headers and the token."""
    return [*SITE_HEADERS, (b"authorization", f"Bearer {token}".encode())]


def new_session_token() -> str:
    return signing.generate_token(signing.generate_session_id())


async def issue(user) -> tuple[str, str]:
    token, row = await sync_to_async(bearer.issue_token)(user)
    return token, row.jti


def session_of(username: str, before: set[str]) -> str:
    """The id of the one session of ``username`` that is not in ``before``."""
    (new,) = {s.id for s in runtime.app(APP).sessions if s.context.user.username == username} - before
    return new


@pytest.mark.django_db(transaction=True)
async def test_revoking_a_token_closes_its_sessions_only(users, fresh_runtime, hook_log) -> None:
    carol, bob = users["carol"], users["bob"]
    (t1, jti1), (t2, _), (t3, _) = await issue(carol), await issue(carol), await issue(bob)
    carol_browser = await client_for(carol)
    async with contextlib.AsyncExitStack() as stack:
        opened: dict[str, object] = {}
        ids: dict[str, str] = {}
        for name, user, kwargs in (
            ("t1", "carol", {"headers": with_bearer(t1)}),
            ("t2", "carol", {"headers": with_bearer(t2)}),
            ("t3", "bob", {"headers": with_bearer(t3)}),
            ("browser", "carol", {"cookie": cookie_header(carol_browser)}),
        ):
            known = {s.id for s in runtime.app(APP).sessions}
            opened[name] = await stack.enter_async_context(websocket(APP, new_session_token(), **kwargs))
            assert await opens(opened[name])
            ids[name] = session_of(user, known)

        assert await sync_to_async(bearer.revoke_token)(jti1)
        close = await next_close(opened["t1"], within=TIMEOUT)
        assert (close.get("code"), close.get("reason")) == (CloseCode.ACCESS_REVOKED, bearer.REVOKED_REASON)
        # The session is destroyed, with its hooks, as at sign-out; the others keep working.
        async with asyncio.timeout(TIMEOUT):
            while True:
                if ids["t1"] in hook_log("on_session_destroyed"):
                    break
                await asyncio.sleep(0.05)
        assert hook_log("on_session_destroyed") == [ids["t1"]]
        assert {s.id for s in runtime.app(APP).sessions} == {ids["t2"], ids["t3"], ids["browser"]}
        for name in ("t2", "t3", "browser"):
            await round_trip(opened[name])

    # T1 is refused from now on, with the reason; T2 still opens.
    async with websocket(APP, new_session_token(), headers=with_bearer(t1)) as communicator:
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        assert connected
        close = await next_close(communicator, within=TIMEOUT)
        assert close.get("code") == CloseCode.BEARER_TOKEN_REFUSED and "revoked" in close.get("reason", "")
    async with websocket(APP, new_session_token(), headers=with_bearer(t2)) as communicator:
        assert await opens(communicator)


@pytest.mark.django_db(transaction=True)
async def test_revoking_several_tokens_at_once_closes_each_ones_sessions(users, fresh_runtime) -> None:
    """What the admin's "Revoke the selected bearer tokens" action does (bearer.revoke_tokens)."""
    (t1, jti1), (t2, jti2) = await issue(users["carol"]), await issue(users["bob"])
    async with websocket(APP, new_session_token(), headers=with_bearer(t1)) as first, \
            websocket(APP, new_session_token(), headers=with_bearer(t2)) as second:
        assert await opens(first) and await opens(second)
        assert await sync_to_async(bearer.revoke_tokens)([jti1, jti2, "no-such-token"]) == 2
        for communicator in (first, second):
            close = await next_close(communicator, within=TIMEOUT)
            assert (close.get("code"), close.get("reason")) == (CloseCode.ACCESS_REVOKED, bearer.REVOKED_REASON)
    assert runtime.app(APP).sessions == []
    # Revoking again changes nothing and says so.
    assert await sync_to_async(bearer.revoke_token)(jti1) is False
    assert await BearerToken.objects.filter(revoked_at__isnull=True).acount() == 0

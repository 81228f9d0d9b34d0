"""Access that ended where no broadcast told the server still ends its sessions, at the next sweep.

A bearer token revoked in the database by another process (``manage.py bokeh_token --revoke``
under the in-memory channel layer, or any revocation while Redis is down), and a user made
inactive without a signal (``queryset.update``), are found by the checks that run after each
session sweep (CHECK_UNUSED_SESSIONS): their WebSockets close with 4008, others stay.
"""

from __future__ import annotations

import datetime

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from bokehserve_django.models import BearerToken
from bokehserve_django.protocol import CloseCode
from tests.security.helpers import TIMEOUT, client_for, cookie_header, opens, websocket
from tests.security.test_bearer_revocation import APP, issue, new_session_token, with_bearer
from tests.security.test_signout import next_close, round_trip


@pytest.fixture
def quick_sweeps(security_settings):
    # Set before the first connection starts the session runtime (it reads the interval then).
    security_settings.BOKEHSERVE = {**security_settings.BOKEHSERVE, "CHECK_UNUSED_SESSIONS": 200}


@pytest.mark.django_db(transaction=True)
async def test_a_token_revoked_in_the_database_alone_closes_its_session(users, quick_sweeps, fresh_runtime) -> None:
    carol = users["carol"]
    (revoked_token, jti), (kept_token, _) = await issue(carol), await issue(carol)
    async with websocket(APP, new_session_token(), headers=with_bearer(revoked_token)) as revoked, \
            websocket(APP, new_session_token(), headers=with_bearer(kept_token)) as kept:
        assert await opens(revoked) and await opens(kept)
        # What another process's revocation leaves here: the row, and no message.
        now = datetime.datetime.now(datetime.UTC)
        assert await BearerToken.objects.filter(jti=jti).aupdate(revoked_at=now) == 1
        close = await next_close(revoked, within=TIMEOUT)
        assert close.get("code") == CloseCode.ACCESS_REVOKED, close
        await round_trip(kept)


@pytest.mark.django_db(transaction=True)
async def test_a_user_deactivated_without_a_signal_loses_their_sessions(users, quick_sweeps, fresh_runtime) -> None:
    carol, bob = users["carol"], users["bob"]
    carol_browser, bob_browser = await client_for(carol), await client_for(bob)
    async with websocket(APP, new_session_token(), cookie=cookie_header(carol_browser)) as carols, \
            websocket(APP, new_session_token(), cookie=cookie_header(bob_browser)) as bobs:
        assert await opens(carols) and await opens(bobs)
        # update() sends no post_save: only the sweep's check can notice.
        await sync_to_async(get_user_model().objects.filter(pk=carol.pk).update)(is_active=False)
        close = await next_close(carols, within=TIMEOUT)
        assert close.get("code") == CloseCode.ACCESS_REVOKED, close
        await round_trip(bobs)

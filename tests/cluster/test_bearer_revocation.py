"""Revoking one bearer token closes the sessions it opened in every process of a cluster.

carol's bearer token T opens a session of "whoami" on A, and a second WebSocket to the same
session on B (relayed to A); her other token U opens a session on B. The test process, on
the cluster's Redis channel layer as ``manage.py bokeh_token --revoke`` would be, revokes
T: both of T's WebSockets close with 4008 and the reason, U's session keeps working.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from bokeh.util.token import get_session_id
from django.contrib.auth import get_user_model

from bokehserve_django import bearer
from tests.cluster.helpers import TIMEOUT, close_all, connect, describe, fresh_token, model, relayed

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

APP = "whoami"


def authorization(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_revoking_a_token_closes_its_sessions_in_every_process(django_db_setup, cluster, cluster_layer) -> None:
    carol = await get_user_model()._default_manager.acreate_user("carol-headless")
    t, t_row = await sync_to_async(bearer.issue_token)(carol)
    u, _ = await sync_to_async(bearer.issue_token)(carol)
    shared = fresh_token()
    on_a = await connect(cluster.a.url, shared, app=APP, origin=False, additional_headers=authorization(t))
    via_b = await connect(cluster.b.url, shared, app=APP, origin=False, additional_headers=authorization(t))
    other = await connect(cluster.b.url, fresh_token(), app=APP, origin=False, additional_headers=authorization(u))
    peers = [on_a, via_b, other]
    try:
        for peer in peers:
            await peer.pull()
            # The bearer token made these WebSockets carol's.
            assert model(peer.doc, "user").text == "carol-headless"
        assert relayed(cluster.b, get_session_id(shared), APP), describe(cluster.a, cluster.b)

        assert await sync_to_async(bearer.revoke_token)(t_row.jti)
        for peer in (on_a, via_b):
            code, reason, _ = await peer.close_info(TIMEOUT)
            assert (code, reason) == (4008, bearer.REVOKED_REASON), describe(cluster.a, cluster.b)
        # U's session, on the process that relayed T's, is untouched.
        await other.pull()
        assert model(other.doc, "user").text == "carol-headless"
    finally:
        await close_all(peers)

"""A sign-out is remembered in Redis: a process that starts afterwards still refuses older tokens."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model

from bokehserve_django import auth
from bokehserve_django.cluster import membership as cluster

pytestmark = pytest.mark.redis


@pytest.mark.django_db(transaction=True)
async def test_a_process_started_after_a_sign_out_refuses_older_tokens(cluster_layer) -> None:
    cluster_layer.BOKEHSERVE = {**cluster_layer.BOKEHSERVE, "SIGN_SESSIONS": True}
    user = await get_user_model()._default_manager.acreate_user("erin")
    before = {auth.TOKEN_USER_KEY: str(user.pk), auth.TOKEN_ISSUED_KEY: time.time() - 5}
    from asgiref.sync import sync_to_async

    await sync_to_async(auth.revoke_user)(user.pk)
    after = {auth.TOKEN_USER_KEY: str(user.pk), auth.TOKEN_ISSUED_KEY: time.time() + 1}

    # "A new process": nothing in memory about the sign-out, only what Redis holds.
    auth._revoked_at.clear()
    cluster.forget()
    await cluster.start()
    try:
        assert cluster.distributed
        assert not (await auth.user_for_websocket(None, before)).is_authenticated
        assert (await auth.user_for_websocket(None, after)).pk == user.pk
    finally:
        await cluster.stop()
        cluster.forget()

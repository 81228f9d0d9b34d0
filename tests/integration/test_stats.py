"""The staff-only sessions page: per-process and cluster-wide counts per app."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import AsyncClient

from bokehserve_django.sessions import runtime


@pytest.fixture
async def clean_runtime():
    yield
    await runtime.shutdown()


@pytest.mark.django_db(transaction=True)
class TestStatsPage:
    async def test_staff_see_counts_others_do_not(self, clean_runtime) -> None:
        users = get_user_model()._default_manager
        staff = await users.acreate_user("staff", password="x", is_staff=True)
        plain = await users.acreate_user("plain", password="x")
        client = AsyncClient()
        assert (await client.get("/bokehserve-stats/")).status_code == 302  # to the login page
        await client.aforce_login(plain)
        assert (await client.get("/bokehserve-stats/")).status_code == 403
        await client.aforce_login(staff)
        assert (await client.get("/echo")).status_code == 200  # opens one session
        data = (await client.get("/bokehserve-stats/?format=json")).json()
        assert data["totals"]["echo"]["sessions"] == 1
        assert data["processes"][0]["apps"]["echo"]["created"] == 1
        page = await client.get("/bokehserve-stats/")
        assert b"<td>echo</td><td>1</td>" in page.content
        assert b'<a href="/admin/bokehserve_django/livesession/">Live Bokeh sessions</a>' in page.content

"""pn.state.user and pn.state.user_info are the Django user of the session, behind Django sign-in."""

from __future__ import annotations

import pytest

pn = pytest.importorskip("panel")

from django.contrib.auth import get_user_model  # noqa: E402
from django.test import AsyncClient  # noqa: E402

from tests.panel.helpers import PanelPage, has_text, texts  # noqa: E402

pytestmark = [pytest.mark.usefixtures("panel_apps"), pytest.mark.django_db(transaction=True)]


async def test_a_signed_in_user_is_pn_state_user() -> None:
    carol = await get_user_model()._default_manager.acreate_user("carol", email="carol@example.com")
    client = AsyncClient()
    await client.aforce_login(carol)
    page = await PanelPage.open("whoami", client=client)
    try:
        assert has_text("user: carol email: carol@example.com")(page.document), texts(page.document)
    finally:
        await page.close()


async def test_login_access_sends_anonymous_visitors_to_sign_in() -> None:
    response = await AsyncClient().get("/whoami")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


async def test_pn_state_user_is_none_for_anonymous_sessions_of_public_apps(settings) -> None:
    from bokehserve_django import registry

    settings.BOKEHSERVE = {**settings.BOKEHSERVE, "APPS": {"whoami": settings.BOKEHSERVE["APPS"]["whoami"]["app"]}}
    registry.reset()
    page = await PanelPage.open("whoami")
    try:
        assert has_text("user: None email: -")(page.document), texts(page.document)
    finally:
        await page.close()


async def test_pn_state_cookies_leave_out_the_django_session_cookie() -> None:
    carol = await get_user_model()._default_manager.acreate_user("carol")
    client = AsyncClient()
    await client.aforce_login(carol)
    client.cookies["theme"] = "dark"
    page = await PanelPage.open("request_info", client=client)
    try:
        assert has_text("cookies: ['theme']")(page.document), texts(page.document)
    finally:
        await page.close()

"""Fixtures of the security tests: the policy apps' settings, users, a hook log, WebSocket helpers.

The session runtime is process-global and bound to the running event loop; pytest-asyncio
gives every test its own loop, so ``fresh_runtime`` shuts the runtime down after each test
and empties the in-memory channel layer (its queues belong to that loop too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from channels.layers import get_channel_layer

from bokehserve_django import auth
from bokehserve_django.sessions import runtime
from tests.security import settings as security


@pytest.fixture
def security_settings(settings):
    """tests.settings with the security apps and URLs (signing on). Returns pytest-django's ``settings``."""
    settings.BOKEHSERVE = security.BOKEHSERVE
    settings.ROOT_URLCONF = security.ROOT_URLCONF
    settings.LOGIN_URL = security.LOGIN_URL
    settings.LOGOUT_REDIRECT_URL = security.LOGOUT_REDIRECT_URL
    return settings


@pytest.fixture
async def fresh_runtime(security_settings):
    """The session runtime, shut down after the test; the channel layer emptied; revocations forgotten."""
    yield runtime
    await runtime.shutdown()
    layer = get_channel_layer()
    if layer is not None and hasattr(layer, "flush"):
        await layer.flush()
    auth._revoked_at.clear()


@pytest.fixture
def users(transactional_db) -> dict[str, Any]:
    """anonymous (None); bob: signed in, no permission, group "others"; carol: auth.view_user and
    group "analysts"; alice: no permission or group, let in by the callable policy."""
    from django.contrib.auth.models import Group, Permission, User

    analysts = Group.objects.create(name="analysts")
    others = Group.objects.create(name="others")
    bob = User.objects.create_user("bob")
    bob.groups.add(others)
    carol = User.objects.create_user("carol")
    carol.groups.add(analysts)
    carol.user_permissions.add(Permission.objects.get(codename="view_user", content_type__app_label="auth"))
    alice = User.objects.create_user("alice")
    return {"anonymous": None, "bob": bob, "carol": carol, "alice": alice}


@pytest.fixture
def hook_log(monkeypatch, tmp_path) -> Callable[[str], list[str]]:
    """Points $BOKEHSERVE_TEST_HOOK_LOG at a fresh file; returns a reader of one event's session ids."""
    path = tmp_path / "hooks.log"
    monkeypatch.setenv("BOKEHSERVE_TEST_HOOK_LOG", str(path))

    def events(name: str) -> list[str]:
        if not path.exists():
            return []
        return [line.split()[2] for line in path.read_text().splitlines() if line.split()[0] == name]

    return events


@pytest.fixture(scope="session")
def security_live():
    """One runbokeh process with tests/security/settings.py (policy apps, signing on), for the whole run."""
    from tests.live import LiveServer

    server = LiveServer(settings="tests.security.settings")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def chromium():
    """Headless Debian Chromium (module-scoped: sync Playwright marks its loop as running)."""
    from tests.browser.helpers import chromium as launch_chromium

    with launch_chromium() as browser:
        yield browser


@pytest.fixture
def watch(chromium):
    """A fresh browser page with problem collection (tests.browser.helpers.PageWatcher)."""
    from tests.browser.helpers import PageWatcher

    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield PageWatcher(page)
    context.close()

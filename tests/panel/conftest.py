"""Panel apps in BOKEHSERVE["APPS"], a fresh session runtime per test."""

from __future__ import annotations

import pytest

from bokehserve_django import registry
from bokehserve_django.sessions import runtime
from tests.browser.conftest import browser, page  # noqa: F401  (Chromium for test_panel_browser.py)


@pytest.fixture
async def panel_apps(settings):
    """tests/settings.py with the Panel test apps registered (needs panel: use in tests that importorskip it)."""
    from tests.panel.settings import PANEL_APPS

    settings.BOKEHSERVE = {**settings.BOKEHSERVE, "APPS": dict(PANEL_APPS)}
    registry.reset()
    yield
    await runtime.shutdown()
    runtime.reopen()
    registry.reset()

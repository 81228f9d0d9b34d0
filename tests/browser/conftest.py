"""Fixtures for the browser tests: headless Debian Chromium via sync Playwright per module, one demo server for the folder.

The Playwright fixture is module-scoped on purpose, not session-scoped: while a sync
Playwright instance is alive it marks its asyncio loop as running in the main thread, which
would break the pytest-asyncio tests of modules that run after this folder.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.helpers import PageWatcher, chromium
from tests.live import LiveServer


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="package")
def live() -> Iterator[LiveServer]:
    """One ``runbokeh`` process serving the demo site (demo_project.settings), shared by the modules.

    Its start and stop cost seconds of CPU each; no test here needs a fresh one (the modules
    that do, or need other settings, define their own ``live``).
    """
    server = LiveServer(settings="demo_project.settings")
    yield server
    server.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def watch(page: Page, live: LiveServer) -> PageWatcher:
    """The test's page, with problem collection and BokehJS helpers; failures quote the server's errors."""
    return PageWatcher(page, server_log=lambda: live.log)

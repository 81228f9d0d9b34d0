"""Panel apps in Chromium under runbokeh: Panel's page renders, widgets reach Python and back, onload fires."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("panel")

from playwright.sync_api import Page, expect

from tests.browser.helpers import PageWatcher
from tests.live import LiveServer

pytestmark = pytest.mark.browser

#: Fonts Panel's templates take from Google; this machine may have no internet access.
OFFLINE_OK = ("fonts.googleapis.com", "fonts.gstatic.com")


@pytest.fixture(scope="module")
def panel_server() -> Iterator[LiveServer]:
    server = LiveServer(settings="tests.panel.settings")
    yield server
    server.stop()


def watched(page: Page, server: LiveServer) -> PageWatcher:
    return PageWatcher(page, server_log=lambda: server.log)


def assert_clean(watch: PageWatcher) -> None:
    problems = [p for p in watch.problems if not any(host in p for host in OFFLINE_OK)]
    assert problems == [], watch.report()


def test_a_bound_widget_updates_the_markdown_pane(page: Page, panel_server: LiveServer) -> None:
    watch = watched(page, panel_server)
    page.goto(panel_server.url + "/bind")
    expect(page.get_by_text("Hello, world!")).to_be_visible()
    text_input = page.locator("input[type=text]")
    text_input.fill("Ada")
    text_input.press("Enter")
    expect(page.get_by_text("Hello, Ada!")).to_be_visible()
    assert_clean(watch)


def test_onload_fires_once_the_page_has_rendered(page: Page, panel_server: LiveServer) -> None:
    watch = watched(page, panel_server)
    page.goto(panel_server.url + "/onload")
    expect(page.get_by_text("status: loaded")).to_be_visible()
    assert_clean(watch)


def test_a_fast_list_template_renders_its_sidebar_and_main_area(page: Page, panel_server: LiveServer) -> None:
    watch = watched(page, panel_server)
    page.goto(panel_server.url + "/template")
    expect(page.get_by_text("Template app").first).to_be_visible()
    expect(page.get_by_text("stars: xxx")).to_be_visible()
    assert_clean(watch)

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


def test_a_periodic_callback_ticks_in_the_page(page: Page, panel_server: LiveServer) -> None:
    watch = watched(page, panel_server)
    page.goto(panel_server.url + "/periodic")
    expect(page.get_by_text("ticks: 3")).to_be_visible()
    assert_clean(watch)


def test_a_tabulator_row_picked_in_the_page_reaches_python(page: Page, panel_server: LiveServer) -> None:
    watch = watched(page, panel_server)
    page.goto(panel_server.url + "/tabulator")
    expect(page.get_by_text("picked: none")).to_be_visible()
    assert page.locator(".tabulator-row").count() >= 3
    page.locator(".tabulator-row", has_text="Lima").locator(".tabulator-cell", has_text="Lima").click()
    expect(page.get_by_text("picked: Lima")).to_be_visible()
    assert_clean(watch)


def test_a_custom_component_s_stylesheet_comes_from_the_component_resources_route(
    page: Page, panel_server: LiveServer
) -> None:
    watch = watched(page, panel_server)
    stylesheets: list[str] = []
    page.on("response", lambda response: stylesheets.append(f"{response.status} {response.url}"))
    page.goto(panel_server.url + "/card")
    card = page.locator(".test-card")
    expect(card).to_have_text("clicked 0 times")
    expect(card).to_have_css("background-color", "rgb(10, 120, 200)")  # from card.css
    card.click()
    expect(card).to_have_text("clicked 1 times")
    route = f"{panel_server.url}/components/tests.panel.apps.card_component/Card/_stylesheets/card.css"
    assert f"200 {route}" in stylesheets, stylesheets
    assert_clean(watch)


def test_session_args_come_from_the_page_url(page: Page, panel_server: LiveServer) -> None:
    watch = watched(page, panel_server)
    page.goto(panel_server.url + "/request_info?city=Oslo")
    expect(page.get_by_text("args: [('city', ['Oslo'])]")).to_be_visible()
    expect(page.get_by_text("|/request_info|?city=Oslo")).to_be_visible()
    assert_clean(watch)


def test_a_markdown_app_renders_its_text_and_its_code(page: Page, panel_server: LiveServer) -> None:
    watch = watched(page, panel_server)
    page.goto(panel_server.url + "/page")
    expect(page.get_by_text("Some text between the code blocks.")).to_be_visible()
    expect(page.get_by_text("from the markdown app's code")).to_be_visible()
    assert_clean(watch)


def test_a_notebook_app_s_slider_reaches_python_and_comes_back(page: Page, panel_server: LiveServer) -> None:
    watch = watched(page, panel_server)
    page.goto(panel_server.url + "/notebook")
    expect(page.get_by_text("squared: 4")).to_be_visible()
    handle = page.locator(".noUi-handle").first
    handle.focus()
    handle.press("ArrowRight")
    expect(page.get_by_text("squared: 9")).to_be_visible()
    assert_clean(watch)


#: Panel's CDN: an embed's stylesheets must come from this server, as on Panel's own pages.
PANEL_CDN = "cdn.holoviz.org"


def test_a_panel_app_embedded_in_a_django_page(page: Page, panel_server: LiveServer) -> None:
    watch = watched(page, panel_server)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    # Fail CDN requests at once, as an offline browser would, rather than wait on DNS.
    page.route(f"https://{PANEL_CDN}/**", lambda route: route.abort("internetdisconnected"))
    page.goto(panel_server.url + "/django/embedded-panel")
    expect(page.get_by_text("A Django page with a Panel app in it")).to_be_visible()
    expect(page.get_by_text("Hello, world!")).to_be_visible()
    text_input = page.locator("input[type=text]")
    text_input.fill("Grace")
    text_input.press("Enter")
    expect(page.get_by_text("Hello, Grace!")).to_be_visible()
    assert [url for url in requested if PANEL_CDN in url] == []
    stylesheets = [url for url in requested if url.split("?")[0].endswith(".css")]
    assert any(url.startswith(f"{panel_server.url}/static/extensions/panel/css/markdown.css") for url in stylesheets), stylesheets
    assert_clean(watch)


@pytest.fixture
def orm_beside_playwright(monkeypatch) -> None:
    """Let the test use the ORM although sync Playwright marks its loop as running in this
    thread (nothing else runs on it meanwhile); requested before the database fixture, so
    that it covers the flush after the test too."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def test_a_login_app_shows_the_django_user_as_pn_state_user(
    page: Page, panel_server: LiveServer, orm_beside_playwright, transactional_db
) -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    watch = watched(page, panel_server)
    page.goto(panel_server.url + "/whoami")
    assert "/accounts/login/" in page.url  # anonymous visitors are sent to sign in
    user = User.objects.create_user("ada", email="ada@example.com", password="not-used-here")
    client = Client()
    client.force_login(user)
    page.context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": panel_server.url}])
    watch.problems.clear()  # the sign-in page of this test site is Django's bare default
    page.goto(panel_server.url + "/whoami")
    expect(page.get_by_text("user: ada email: ada@example.com")).to_be_visible()
    assert_clean(watch)

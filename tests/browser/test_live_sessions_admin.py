"""What a page in Chromium shows when an administrator acts from the admin's "Live Bokeh sessions".

A notice sent to the app appears in a banner at the top of the open page, as plain text
(markup in it is not interpreted), and the user can dismiss it. A session the administrator
closes shows the reason, and the page is not reloaded by itself (BokehJS's reconnects meet
4010, which recover.js would otherwise answer with a reload).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from bokeh.util.token import get_session_id

from tests.admin_client import OPERATOR_PERMISSIONS, AdminClient, make_user
from tests.browser.helpers import PageWatcher
from tests.live import LiveServer

pytestmark = pytest.mark.browser

PAGE = "/admin/bokehserve_django/livesession/"
BANNER = "#bokehserve-admin-notice"
STATUS_NOTICE = "#bokehserve-recover-notice"
TOKEN_RE = re.compile(r'"token":\s*"([A-Za-z0-9_\-.]+)"')


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    """tests/settings.py's apps and the admin (the demo site's conftest server has other users)."""
    server = LiveServer()
    yield server
    server.stop()


@pytest.fixture
def sync_orm_beside_playwright(monkeypatch) -> None:
    """Sync Playwright marks its loop as running in this thread; nothing else runs on it, so the
    ORM (users for the admin client) is safe here. Requested before the database fixtures."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def admin_client(sync_orm_beside_playwright, transactional_db, live) -> AdminClient:
    client = AdminClient(live.url, make_user("operator", staff=True, perms=OPERATOR_PERMISSIONS))
    assert client.get(PAGE)[0] == 200
    return client


def test_a_notice_shows_as_text_and_can_be_dismissed(page, live, admin_client) -> None:
    watch = PageWatcher(page, server_log=lambda: live.log)
    watch.open(f"{live.url}/whoami")
    text = "Maintenance at <b>17:00</b> & back soon"
    status, _, _ = admin_client.post(PAGE + "notice/", {"app": "whoami", "text": text})
    assert status == 302
    page.wait_for_selector(BANNER, state="visible", timeout=10_000)
    assert page.text_content(f"{BANNER} .bokehserve-admin-notice-text") == text
    assert page.locator(f"{BANNER} b").count() == 0  # shown as typed, not as markup
    page.click(f"{BANNER} .bokehserve-admin-notice-dismiss")
    page.wait_for_selector(BANNER, state="hidden", timeout=5_000)
    # The page still works after the notice.
    watch.set("lookup", "value", "operator")
    watch.wait_prop("found", "text", "operator: exists")
    watch.assert_clean()


def test_a_session_closed_by_the_administrator_shows_the_reason_and_does_not_reload(page, live, admin_client) -> None:
    watch = PageWatcher(page, server_log=lambda: live.log)
    watch.open(f"{live.url}/whoami")
    session_id = get_session_id(TOKEN_RE.search(page.content()).group(1))
    page.evaluate("() => { window.__not_reloaded = true }")
    status, _, _ = admin_client.post(PAGE + "actions/", {
        "action": "close", "session": f"whoami/{session_id}/", "reason": "Closed for an upgrade",
    })
    assert status == 302
    page.wait_for_function(
        "(selector) => { const n = document.querySelector(selector); return n && n.textContent.includes('upgrade') }",
        arg=STATUS_NOTICE, timeout=10_000,
    )
    assert page.text_content(STATUS_NOTICE) == "Closed for an upgrade. Reload the page to start a new session."
    # BokehJS retries at once and after 2 s: both meet 4010; no reload follows (bounded wait).
    page.wait_for_timeout(4_000)
    assert page.evaluate("() => window.__not_reloaded === true"), "the page reloaded by itself"
    assert page.text_content(STATUS_NOTICE) == "Closed for an upgrade. Reload the page to start a new session."
    assert f"Closing session {session_id!r} of app 'whoami' at an administrator's request" in live.log
    # The reconnects did meet 4010, the close recover.js answers with a reload on other pages.
    assert f"WebSocket for session {session_id!r} of app 'whoami': the session is gone" in live.log

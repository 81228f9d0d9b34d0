"""A page whose session died with its process reloads by itself once a server is back.

The runbokeh process (the demo site) behind an open ``button`` page is SIGKILLed, so its sessions are gone
for good, and a new process starts on the same port. BokehJS reconnects with the page's
original token; the server closes that reconnect with 4010 (SESSION_GONE) and recover.js
reloads the page, which gets a new session and works again. Nothing in the test touches the
page between the kill and the check.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator

import pytest
from bokeh.util.token import get_session_id
from playwright.sync_api import Page

from tests.browser.helpers import RENDERED_JS, PageWatcher, websocket_opens
from tests.live import LiveServer

pytestmark = pytest.mark.browser

#: Seconds from the kill to a working reloaded page. BokehJS retries at once, then after
#: 2, 4, 8 and 16 s; a new runbokeh answers within a few seconds, so the retry after 4 or
#: 8 s meets it, and the reload follows 1.5 s later.
RECOVERY_TIMEOUT = 30

#: The demo site: signed session ids (both processes share SECRET_KEY, so the old token is
#: valid at the new process, as in a real restart) and INFO logs of WebSocket opens.
SETTINGS = "demo_project.settings"

TOKEN_RE = re.compile(r'"token":\s*"([A-Za-z0-9_\-.]+)"')

#: What the page may report while no server listens or the old session is refused: the
#: browser's and BokehJS's own messages about the failed reconnects, nothing else.
OUTAGE_PROBLEMS = re.compile(
    r"WebSocket connection to .* failed|Failed to connect to Bokeh server|Lost websocket|Could not open websocket")


@pytest.fixture
def servers() -> Iterator[list[LiveServer]]:
    """The runbokeh processes a test starts, stopped (by their own pids) afterwards."""
    started: list[LiveServer] = []
    yield started
    for server in started:
        server.stop()


def page_session_id(page: Page) -> str:
    match = TOKEN_RE.search(page.content())
    assert match, "no token in the page"
    return get_session_id(match.group(1))


def round_trip(watch: PageWatcher, text: str) -> None:
    """A click and a text edit, each answered by the session's Python callbacks.

    The click count starts at 0 in every new session, so "clicks: 1" after the reload also
    shows that the page runs on a fresh session, not on a copy of the old one's state.
    """
    watch.click("button")
    watch.wait_prop("output", "text", "clicks: 1")
    watch.set("text_input", "value", text)
    watch.wait_prop("upper", "text", text.upper())


# ``servers`` before ``page``: pytest tears fixtures down in the reverse order, so the page is
# closed before its server stops, which would otherwise wait out its drain for the open session.
def test_page_reloads_itself_after_its_session_died(servers: list[LiveServer], page: Page) -> None:
    first = LiveServer(settings=SETTINGS)
    servers.append(first)
    current = [first]
    watch = PageWatcher(page, server_log=lambda: current[0].log)
    loads: list[float] = []
    page.on("load", lambda _: loads.append(time.monotonic()))

    watch.open(first.url + "/button")
    old_session = page_session_id(page)
    round_trip(watch, "before the kill")
    watch.assert_clean()
    assert len(loads) == 1
    # A mark the reload wipes out: proof that the document was replaced by a new page
    # load, not patched in place by BokehJS.
    page.evaluate("() => { window.__before_kill = true }")

    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait(10)
    killed_at = time.monotonic()
    first_log = first.log
    assert "4010" not in first_log
    problems_before_reload = len(watch.problems)

    second = LiveServer(settings=SETTINGS, port=first.port)
    servers.append(second)
    current[0] = second

    deadline = killed_at + RECOVERY_TIMEOUT
    while len(loads) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert len(loads) >= 2, (
        f"the page did not reload within {RECOVERY_TIMEOUT} s of the kill\n{watch.report()}\n"
        f"new server log:\n{second.log}")
    page.wait_for_load_state("load")
    assert page.evaluate("() => window.__before_kill === undefined")
    assert len(loads) == 2, f"the page reloaded {len(loads) - 1} times"

    remaining_ms = max(1_000, (deadline - time.monotonic()) * 1000)
    watch.wait_js(RENDERED_JS, arg=1, timeout=remaining_ms, what="BokehJS to render the reloaded page")
    new_session = page_session_id(page)
    assert new_session != old_session
    round_trip(watch, "after the reload")
    assert time.monotonic() - killed_at < RECOVERY_TIMEOUT

    outage = watch.problems[problems_before_reload:]
    unexpected = [problem for problem in outage if not OUTAGE_PROBLEMS.search(problem)]
    assert unexpected == [], f"unexpected page problems during recovery: {unexpected}"
    # The new process must not have served the dead session's id as a new session (what a
    # reconnect got before SESSION_GONE, and what BokehJS then fails to swap in place).
    log = second.log
    assert websocket_opens(log, old_session) == 0, log
    assert websocket_opens(log, new_session) == 1, log

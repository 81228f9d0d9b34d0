"""Sessions are created while other sessions run callbacks, as on any busy server.

The browser tests above meet this by chance (a closed tab's session keeps its periodic and
thread callbacks running until it expires); here it is provoked on purpose: twenty ``thread``
sessions tick on the server (a next-tick callback every 0.2 s and a periodic one every
0.5 s each) while the ``sliders`` page is requested over and over. Every request must
give the page, and the browser must still render a working app.
"""

from __future__ import annotations

import re

import pytest

from tests.browser.helpers import PageWatcher

pytestmark = pytest.mark.browser

BACKGROUND_SESSIONS = 20
REQUESTS = 100


def test_sessions_created_while_others_run_callbacks(live, watch: PageWatcher) -> None:
    request = watch.page.context.request
    # Each /thread page request creates a session whose callbacks keep running for 15 s.
    statuses = [request.get(live.url + "/thread").status for _ in range(BACKGROUND_SESSIONS)]
    statuses += [request.get(live.url + "/sliders").status for _ in range(REQUESTS)]
    failed = len(statuses) - statuses.count(200)
    errors = sorted(set(re.findall(r"RuntimeError: (.*)", live.log)))
    assert failed == 0, (
        f"{failed} of {len(statuses)} page requests failed ({sorted(set(statuses))}); server errors: {errors}")

    watch.open(live.url + "/sliders?N=50", nroots=3)
    watch.set("amplitude", "value", 2)
    watch.wait_prop("summary", "text", "amplitude=2.00 offset=0.00 phase=0.00 freq=1.00 points=50")
    watch.assert_clean()

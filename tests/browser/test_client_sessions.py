"""bokeh.client sessions shown in the browser: the guide's "customise a session before the browser sees it".

- The demo's /django/custom/ view pulls a ``button`` session with bokeh.client, changes the
  ``output`` Div, and embeds that session with {% bokeh_session %} (server_session).
- This test process pulls a session itself, changes it, keeps it open, and opens the app
  page with ``?bokeh-session-id=<id>``: the browser must show the change, and a change made
  in the browser must reach the bokeh.client session.

The demo server runs with DEBUG settings, so session ids are unsigned.
"""

from __future__ import annotations

import pytest
from bokeh.client import pull_session
from bokeh.util.token import generate_session_id

from tests.browser.helpers import ClientThread, PageWatcher, websocket_opens

pytestmark = pytest.mark.browser


@pytest.fixture
def client_thread():
    thread = ClientThread()
    yield thread
    thread.close()


def test_django_view_customised_session(live, watch: PageWatcher) -> None:
    """The view's change (made through bokeh.client before rendering) shows in the embedded session."""
    watch.open(live.url + "/django/custom/")
    assert watch.page.locator("h1").inner_text() == "Customised session"
    assert watch.status_of("/button/autoload.js") == 200
    watch.screenshot("custom_session.png")
    text = watch.get("output", "text")
    assert text.startswith("Prepared by a Django view for "), (
        f"output.text is {text!r}: the PATCH-DOC the view's bokeh.client session made never reached the "
        "server (bokeh.client only queues it on its IOLoop; closing the session at the end of the "
        "`with pull_session(...)` block sends the WebSocket close first)"
    )
    # The embedded session is live: a click still round-trips.
    watch.click("button")
    watch.wait_prop("output", "text", "clicks: 1")
    watch.assert_clean()


def test_client_session_shown_in_browser(live, watch: PageWatcher, client_thread: ClientThread) -> None:
    session_id = generate_session_id(secret_key=None, signed=False)
    session = client_thread.call(pull_session, url=live.url + "/button", session_id=session_id)
    try:
        assert session.id == session_id
        document = session.document
        assert document.get_model_by_name("output").text == "clicks: 0"

        # A change from the client runs the server's on_change callback; its result comes back.
        def set_value() -> None:
            document.get_model_by_name("text_input").value = "from bokeh.client"

        client_thread.call(set_value)
        upper = document.get_model_by_name("upper")
        assert client_thread.wait_for(session, lambda: upper.text == "FROM BOKEH.CLIENT"), (
            f"the server callback's result did not reach bokeh.client: upper.text == {upper.text!r}")

        # The browser opens THAT session (still open in this process) and sees the change.
        watch.open(f"{live.url}/button?bokeh-session-id={session_id}")
        assert watch.get("text_input", "value") == "from bokeh.client"
        assert watch.get("upper", "text") == "FROM BOKEH.CLIENT"

        # And the other way: a click in the browser reaches the bokeh.client session.
        watch.page.locator("button", has_text="Press Me").click()
        watch.wait_prop("output", "text", "clicks: 1")
        output = document.get_model_by_name("output")
        assert client_thread.wait_for(session, lambda: output.text == "clicks: 1"), (
            f"the browser's click did not reach bokeh.client: output.text == {output.text!r}")
        assert list(document.get_model_by_name("clicks_source").data["text"]) == ["1"]
        watch.assert_clean()
    finally:
        client_thread.call(session.close)
    # One WebSocket from bokeh.client, one from the browser, both on the same session.
    assert websocket_opens(live.log, session_id) == 2, live.log

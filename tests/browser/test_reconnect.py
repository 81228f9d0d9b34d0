"""BokehJS (3.8+) reconnects after a lost WebSocket, with the same token, to the session it had.

The page's WebSockets are recorded by an init script (``RECORD_SOCKETS_JS``): the object in
``window.__bk_sockets`` is the very WebSocket BokehJS's ClientConnection keeps as ``socket``,
so closing it is what a dropped connection looks like to BokehJS (its ``onclose`` runs and
it schedules a reconnect). BokehJS does not expose its ClientConnection otherwise.
"""

from __future__ import annotations

import pytest
from bokeh.util.token import get_session_id

from tests.browser.helpers import RECORD_SOCKETS_JS, PageWatcher, model_js, websocket_opens

pytestmark = pytest.mark.browser


def test_reconnect_keeps_the_session(live, watch: PageWatcher) -> None:
    log_start = len(live.log)  # the demo server is shared by the folder: this test's part of its log
    page = watch.page
    page.add_init_script(RECORD_SOCKETS_JS)
    watch.open(live.url + "/button")
    sockets = page.evaluate("() => window.__bk_sockets.map((s) => [s.url, s.protocols, s.socket.readyState])")
    assert len(sockets) == 1, sockets
    url, protocols, state = sockets[0]
    assert url == live.url.replace("http://", "ws://") + "/button/ws"
    assert protocols[0] == "bokeh" and state == 1
    token = protocols[1]
    session_id = get_session_id(token)

    watch.click("button")
    watch.wait_prop("output", "text", "clicks: 1")

    # Cut the connection under BokehJS. It reconnects at once (first retry has no delay) and
    # logs "Reconnected websocket" after the ACK and the re-pull of the session's document.
    with page.expect_console_message(lambda message: "Reconnected websocket" in message.text, timeout=10_000):
        page.evaluate("() => window.__bk_sockets[0].socket.close()")
    assert page.evaluate("() => window.__bk_sockets[0].socket.readyState") == 3  # CLOSED
    sockets = page.evaluate("() => window.__bk_sockets.map((s) => [s.url, s.protocols, s.socket.readyState])")
    assert sockets[1:] == [[url, ["bokeh", token], 1]], "BokehJS reconnected with another URL or token"

    # The re-pulled document is the session's: clicks continue from the old state.
    assert watch.get("output", "text") == "clicks: 1"
    watch.click("button")
    watch.wait_prop("output", "text", "clicks: 2")
    assert page.evaluate(f"() => {model_js('clicks_source')}.data.text") == ["1", "2"]
    watch.set("text_input", "value", "after reconnect")
    watch.wait_prop("upper", "text", "AFTER RECONNECT")

    log = live.log[log_start:]
    assert websocket_opens(log, session_id) == 2, f"expected session {session_id} opened twice:\n{log}"
    assert log.lower().count("websocket opened") == 2, f"another session was opened:\n{log}"
    watch.screenshot("reconnect.png")
    watch.assert_clean()

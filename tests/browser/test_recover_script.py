"""recover.js on its own, in Chromium: which WebSocket closes reload the page, and the reload-loop guard.

No Bokeh server here: a small WebSocket server in the test closes each connection with the
code the test asks for, and a static page (served by Playwright's router, so nothing else
listens) loads recover.js twice, as a page with two embeds does, then opens sockets the way
BokehJS does (``new WebSocket(url, ["bokeh", token])``), one after another like its retries.
The page counts its own loads in sessionStorage, which survives ``location.reload()``.

The same server answers the page's plain HTTP requests: a page fulfilled by Playwright's
router would not do, because Chromium treats such a page as public and its Local Network
Access checks then block WebSockets to 127.0.0.1.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection, serve

pytestmark = pytest.mark.browser

RECOVER_JS = Path(__file__).resolve().parents[2] / "bokehserve_django" / "static" / "bokehserve_django" / "recover.js"
NOTICE = "#bokehserve-recover-notice"

PAGE_HTML = """<!doctype html>
<html><head><title>recover.js test</title>
<link rel="icon" href="data:,">
<script src="/recover.js"></script>
<script>window.__wrapped_once = window.WebSocket;</script>
<script src="/recover.js"></script>
<script>
  const loads = JSON.parse(sessionStorage.getItem("test.loads") || "[]");
  loads.push(Date.now());
  sessionStorage.setItem("test.loads", JSON.stringify(loads));
  window.closes = [];
  window.chainDone = false;
  // Opens `count` sockets to `path`, each after the previous one closed: BokehJS's retries
  // without its 2-16 s delays. protocols === null opens a socket with no subprotocol.
  window.chain = (path, protocols, count) => {
    window.chainDone = false;
    const next = () => {
      if (count-- <= 0) { window.chainDone = true; return; }
      const url = "ws://" + location.host + path;
      const socket = protocols === null ? new WebSocket(url) : new WebSocket(url, protocols);
      socket.addEventListener("close", (event) => { window.closes.push(event.code); setTimeout(next, 50); });
    };
    next();
  };
  const auto = new URLSearchParams(location.search).get("auto");
  if (auto) window.chain(auto, ["bokeh", "tok"], 1);
</script></head>
<body><p>recover.js test page</p></body></html>
"""


class CloseServer:
    """A WebSocket server on 127.0.0.1 that accepts any offered subprotocol, then closes.

    Plain GETs get the test page (``/page.html``) or recover.js (``/recover.js``).

    ``/always/<code>`` closes every connection with ``<code>``; ``/script`` takes the next
    action from ``script``: a close code, or "ack" (send one message, as a Bokeh server sends
    its ACK, then close normally).
    """

    def __init__(self) -> None:
        self.script: deque[int | str] = deque()
        self.connections: list[tuple[str, str | None]] = []
        self._server = serve(self._handle, "127.0.0.1", 0, select_subprotocol=self._select,
                             process_request=self._serve_file)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="close-server", daemon=True)
        self._thread.start()

    @staticmethod
    def _select(connection: ServerConnection, subprotocols: Any) -> Any:
        return subprotocols[0] if subprotocols else None

    @staticmethod
    def _serve_file(connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        path = request.path.split("?", 1)[0]
        if path == "/page.html":
            body, content_type = PAGE_HTML.encode(), "text/html; charset=utf-8"
        elif path == "/recover.js":
            body, content_type = RECOVER_JS.read_bytes(), "application/javascript"
        else:
            return connection.respond(404, "not found\n")
        headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                           ("Cache-Control", "no-store")])
        return Response(200, "OK", headers, body)

    def _handle(self, connection: ServerConnection) -> None:
        path = connection.request.path
        self.connections.append((path, connection.subprotocol))
        if path.startswith("/always/"):
            connection.close(int(path.rsplit("/", 1)[1]), "test close")
            return
        action = self.script.popleft() if self.script else 1000
        if action == "ack":
            connection.send("ACK")
            connection.close(1000, "test close after ack")
        else:
            connection.close(int(action), "test close")

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(5)


@pytest.fixture(scope="module")
def close_server() -> Iterator[CloseServer]:
    server = CloseServer()
    yield server
    server.stop()


@pytest.fixture
def test_page(page: Page, close_server: CloseServer) -> Iterator[Page]:
    """The test page (with recover.js) on the close server's origin; fails on any console error."""
    close_server.script.clear()
    problems: list[str] = []
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.base = f"http://127.0.0.1:{close_server.port}"  # type: ignore[attr-defined]
    yield page
    assert problems == [], f"console errors: {problems}"


def loads(page: Page) -> list[int]:
    return page.evaluate("() => JSON.parse(sessionStorage.getItem('test.loads') || '[]')")


def wait_loads(page: Page, count: int, timeout: float) -> None:
    page.wait_for_function(
        "(n) => JSON.parse(sessionStorage.getItem('test.loads') || '[]').length >= n", arg=count, timeout=timeout)


def test_session_gone_reloads_once_then_backs_off(test_page: Page) -> None:
    page = test_page
    page.goto(page.base + "/page.html?auto=/always/4010")
    # Loaded twice, the script wrapped WebSocket once.
    assert page.evaluate("() => window.WebSocket === window.__wrapped_once")

    page.wait_for_selector(NOTICE, timeout=5_000)
    assert page.text_content(NOTICE) == "This session has ended; reloading\u2026"
    wait_loads(page, 2, timeout=5_000)
    first, second = loads(page)
    assert 1_000 <= second - first < 5_000, "the first reload should come after a short delay"

    # The reloaded page meets 4010 again: the guard keeps 10 s between automatic reloads
    # and says so, instead of reloading every 1.5 s.
    page.wait_for_selector(NOTICE, timeout=5_000)
    assert page.text_content(NOTICE).startswith("This session has ended; reloading in ")
    assert page.locator(NOTICE).count() == 1
    time.sleep(7)
    assert len(loads(page)) == 2, "reloaded again within 10 s of the last automatic reload"
    wait_loads(page, 3, timeout=8_000)
    third = loads(page)[2]
    assert third - second >= 9_000, loads(page)


def test_sockets_that_are_not_bokeh_are_left_alone(test_page: Page, close_server: CloseServer) -> None:
    page = test_page
    page.goto(page.base + "/page.html")
    page.evaluate("() => window.chain('/always/4010', null, 1)")
    page.wait_for_function("() => window.chainDone")
    page.evaluate("() => window.chain('/always/4010', ['chat'], 1)")
    page.wait_for_function("() => window.chainDone")
    assert page.evaluate("() => window.closes") == [4010, 4010]
    time.sleep(2.5)  # longer than the notice delay of a reload
    assert len(loads(page)) == 1
    assert page.locator(NOTICE).count() == 0
    assert ("/always/4010", None) in close_server.connections
    assert ("/always/4010", "chat") in close_server.connections

    # The same close on a Bokeh socket does reload: the test above can fail.
    page.evaluate("() => window.chain('/always/4010', ['bokeh', 'tok'], 1)")
    wait_loads(page, 2, timeout=5_000)


def test_wrapped_websocket_behaves_like_the_native_one(test_page: Page) -> None:
    page = test_page
    page.goto(page.base + "/page.html")
    facts = page.evaluate("""() => {
        const url = "ws://" + location.host + "/always/1000";
        class Sub extends WebSocket {}
        const plain = new WebSocket(url);
        const bokeh = new WebSocket(url, ["bokeh", "tok"]);
        const sub = new Sub(url);
        return {
            name: WebSocket.name,
            constants: [WebSocket.CONNECTING, WebSocket.OPEN, WebSocket.CLOSING, WebSocket.CLOSED],
            instances: [plain instanceof WebSocket, bokeh instanceof WebSocket, sub instanceof WebSocket, sub instanceof Sub],
            prototype: Object.getPrototypeOf(bokeh) === WebSocket.prototype,
            readyState: bokeh.readyState,
            callWithoutNew: (() => { try { WebSocket(url); return "no error"; } catch (e) { return e.name; } })(),
        };
    }""")
    assert facts == {
        "name": "WebSocket",
        "constants": [0, 1, 2, 3],
        "instances": [True, True, True, True],
        "prototype": True,
        "readyState": 0,
        "callWithoutNew": "TypeError",
    }


def test_four_unavailable_closes_in_a_row_reload(test_page: Page, close_server: CloseServer) -> None:
    page = test_page
    page.goto(page.base + "/page.html")
    close_server.script.extend([4009, 4009, 4009, 4009])
    page.evaluate("() => window.chain('/script', ['bokeh', 'tok'], 3)")
    page.wait_for_function("() => window.chainDone")
    time.sleep(2)
    assert len(loads(page)) == 1 and page.locator(NOTICE).count() == 0, "reloaded after only three 4009 closes"

    page.evaluate("() => window.chain('/script', ['bokeh', 'tok'], 1)")
    page.wait_for_selector(NOTICE, timeout=5_000)
    assert page.text_content(NOTICE) == "The server is unavailable; reloading\u2026"
    wait_loads(page, 2, timeout=5_000)


def test_a_working_connection_resets_the_unavailable_count(test_page: Page, close_server: CloseServer) -> None:
    page = test_page
    page.goto(page.base + "/page.html")
    close_server.script.extend([4009, 4009, 4009, "ack", 4009, 4009, 4009])
    page.evaluate("() => window.chain('/script', ['bokeh', 'tok'], 7)")
    page.wait_for_function("() => window.chainDone")
    assert page.evaluate("() => window.closes") == [4009, 4009, 4009, 1000, 4009, 4009, 4009]
    time.sleep(2.5)
    assert len(loads(page)) == 1, "six 4009 closes with a working connection between them reloaded the page"
    assert page.locator(NOTICE).count() == 0

"""Helpers for the browser tests: a page watcher that records problems, BokehJS model access, bokeh.client in a thread.

All model access goes through ``Bokeh.documents[0].get_model_by_name(<name>)``, as the demo
apps' README prescribes (every model a test drives or reads has a unique ``name``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from playwright.sync_api import (
    Browser,
    Error as PlaywrightError,
    Page,
    TimeoutError as PlaywrightTimeout,
    sync_playwright,
)

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_DIR = Path("/tmp/browser-helper")

#: Milliseconds to wait for a Python callback's result to come back to the page.
ROUND_TRIP_TIMEOUT = 10_000

#: True once BokehJS has built the document and a view for each of its roots.
RENDERED_JS = """(nroots) => {
    if (!window.Bokeh || Bokeh.documents.length === 0 || Bokeh.index == null) return false;
    const roots = Bokeh.documents[0].roots();
    const views = Object.values(Bokeh.index);
    return roots.length >= nroots && roots.every((root) => views.some((view) => view.model === root));
}"""

#: Records every WebSocket the page opens (with the subprotocols it offered) in
#: ``window.__bk_sockets``; BokehJS's ClientConnection keeps the same object as ``socket``.
RECORD_SOCKETS_JS = """(() => {
    const Native = window.WebSocket;
    window.__bk_sockets = [];
    window.WebSocket = class extends Native {
        constructor(url, protocols) {
            super(url, protocols);
            window.__bk_sockets.push({socket: this, url: String(url), protocols: protocols});
        }
    };
})();"""


def websocket_opens(log: str, session_id: str) -> int:
    """How often the server log says a WebSocket was opened for ``session_id``."""
    return sum(1 for line in log.splitlines() if "websocket opened" in line.lower() and repr(session_id) in line)


def model_js(name: str) -> str:
    """A JS expression for the named model of the page's first Bokeh document."""
    return f"Bokeh.documents[0].get_model_by_name({json.dumps(name)})"


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's headless Chromium through sync Playwright (never a downloaded browser)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class PageWatcher:
    """Collects console errors, uncaught page errors, failed requests and HTTP errors of a page."""

    def __init__(self, page: Page, server_log: Callable[[], str] | None = None) -> None:
        self.page = page
        self._server_log = server_log
        self.problems: list[str] = []
        self.responses: dict[str, int] = {}
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.problems.append(f"pageerror: {error}"))
        page.on("requestfailed", lambda request: self.problems.append(
            f"requestfailed: {request.method} {request.url} ({request.failure})"))
        page.on("response", self._on_response)

    def _on_console(self, message: Any) -> None:
        if message.type == "error":
            self.problems.append(f"console error: {message.text} at {message.location}")

    def _on_response(self, response: Any) -> None:
        self.responses[response.url] = response.status
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    def report(self) -> str:
        """The page's problems so far, and the server's error lines (the usual cause of an HTTP 500)."""
        lines = [f"page problems: {self.problems}"]
        if self._server_log is not None:
            errors = [line for line in self._server_log().splitlines()
                      if " ERROR " in line or line.startswith(("RuntimeError", "Internal Server Error"))]
            lines.append("server errors:\n  " + "\n  ".join(errors[-10:]) if errors else "server log: no errors")
        return "\n".join(lines)

    def assert_clean(self) -> None:
        assert not self.problems, "the page reported problems\n" + self.report()

    def status_of(self, path_end: str) -> int | None:
        """The status of the (last) response whose URL path ends with ``path_end``."""
        matches = [status for url, status in self.responses.items() if url.split("?")[0].endswith(path_end)]
        return matches[-1] if matches else None

    # --- the page -------------------------------------------------------------------------------

    def open(self, url: str, nroots: int = 1) -> None:
        """Go to ``url`` and wait until BokehJS has rendered the document's roots."""
        response = self.page.goto(url)
        assert response is not None and response.status == 200, (
            f"GET {url} gave {response and response.status}\n{self.report()}")
        try:
            self.page.wait_for_function(RENDERED_JS, arg=nroots, timeout=15_000)
        except PlaywrightTimeout:
            raise AssertionError(f"BokehJS did not render {url}\n{self.report()}") from None

    def get(self, name: str, prop: str) -> Any:
        return self.page.evaluate(f"() => {model_js(name)}[{json.dumps(prop)}]")

    def set(self, name: str, prop: str, value: Any) -> None:
        """Set a model property in the page (BokehJS sends it to the server as a PATCH-DOC)."""
        self.page.evaluate(f"(value) => {{ {model_js(name)}[{json.dumps(prop)}] = value }}", value)

    def click(self, name: str) -> None:
        """Fire a ButtonClick on the named Button, as a DOM click would."""
        self.page.evaluate(
            "(name) => { const {ButtonClick} = Bokeh.require('core/bokeh_events');"
            " Bokeh.documents[0].get_model_by_name(name).trigger_event(new ButtonClick()) }",
            name,
        )

    def wait_js(self, expression: str, arg: Any = None, timeout: float = ROUND_TRIP_TIMEOUT,
                what: str | None = None) -> Any:
        """Wait until the JS function ``expression`` returns a truthy value; fail with ``what``."""
        try:
            return self.page.wait_for_function(expression, arg=arg, timeout=timeout).json_value()
        except PlaywrightTimeout:
            raise AssertionError(f"timed out after {timeout} ms waiting for {what or expression}\n"
                                 f"{self.report()}") from None

    def wait_prop(self, name: str, prop: str, expected: Any, timeout: float = ROUND_TRIP_TIMEOUT) -> None:
        """Wait until ``name.prop`` equals ``expected`` (compared as JSON)."""
        expression = (f"(expected) => JSON.stringify({model_js(name)}[{json.dumps(prop)}])"
                      " === JSON.stringify(expected)")
        try:
            self.page.wait_for_function(expression, arg=expected, timeout=timeout)
        except PlaywrightTimeout:
            try:
                actual = self.get(name, prop)
            except PlaywrightError as exc:
                actual = f"<unreadable: {exc}>"
            raise AssertionError(f"{name}.{prop} is {actual!r} after {timeout} ms, expected {expected!r}\n"
                                 f"{self.report()}") from None

    def screenshot(self, filename: str) -> Path:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOT_DIR / filename
        self.page.screenshot(path=str(path), full_page=True)
        return path


class ClientThread:
    """Runs ``bokeh.client`` calls in one dedicated thread with its own event loop.

    The sync Playwright API marks its asyncio loop as running in the main thread between
    calls, and ``bokeh.client`` drives a Tornado IOLoop with ``start()``/``run_sync`` on the
    current thread's loop, which refuses to run while another loop is marked running. So every
    ``bokeh.client`` call goes through this single worker thread, which owns a fresh loop.
    """

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bokeh-client",
                                            initializer=lambda: asyncio.set_event_loop(asyncio.new_event_loop()))

    def call(self, function: Callable[..., T], *args: Any, timeout: float = 30, **kwargs: Any) -> T:
        return self._executor.submit(function, *args, **kwargs).result(timeout)

    def wait_for(self, session: Any, predicate: Callable[[], bool], timeout: float = 10) -> bool:
        """Run the client session's loop, applying the server's PATCH-DOCs, until ``predicate()``.

        ``session.force_roundtrip()`` cannot be used to wait for patches: while bokeh.client waits
        for a reply (``states.WAITING_FOR_REPLY``) it drops every other message, PATCH-DOCs
        included. Only ``CONNECTED_AFTER_ACK`` applies them, which ``ClientConnection._loop_until``
        runs (checking ``predicate`` after each message). A timer stops the loop if the patch
        never comes; the session is unusable afterwards (a read stays pending), so close it.
        """

        def pump() -> bool:
            connection = session._connection
            loop = connection._loop
            timer = loop.call_later(timeout, loop.stop)
            try:
                connection._loop_until(predicate)
            finally:
                loop.remove_timeout(timer)
            return predicate()

        return self.call(pump, timeout=timeout + 10)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

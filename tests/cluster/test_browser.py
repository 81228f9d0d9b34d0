"""Headless Chromium against the cluster: page loads through nginx (HTTPS, round robin), and a
session pulled with bokeh.client on process A shown and changed in a browser on process B.

Sync Playwright, module-scoped (see tests/browser/conftest.py for why not session-scoped).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from bokeh.util.token import get_session_id
from playwright.sync_api import Browser, Page

from tests.browser.helpers import ClientThread, PageWatcher, chromium
from tests.cluster.helpers import opened_locally, relayed, token_in_page

pytestmark = [pytest.mark.redis, pytest.mark.browser]

BROWSER_LOADS = 8

#: BokehJS has the document and a view of its first root (echo's second root, a data source, has none).
_RENDERED = """() => {
    if (!window.Bokeh || Bokeh.documents.length === 0 || Bokeh.index == null) return false;
    const root = Bokeh.documents[0].roots()[0];
    return root != null && Object.values(Bokeh.index).some((view) => view.model === root);
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def client_thread() -> Iterator[ClientThread]:
    thread = ClientThread()
    yield thread
    thread.close()


def test_browser_page_loads_through_nginx(cluster, browser: Browser) -> None:
    hooks_ids, upstreams = [], set()
    log_start = len(cluster.nginx.access_log)
    for i in range(BROWSER_LOADS):
        app = "echo" if i % 2 == 0 else "hooks"
        context = browser.new_context(ignore_https_errors=True)  # a new visitor each time
        try:
            page = context.new_page()
            page.set_default_timeout(15_000)
            watch = PageWatcher(page)
            response = page.goto(f"{cluster.nginx.url}/{app}")
            assert response is not None and response.status == 200, response and response.status
            session_id = get_session_id(token_in_page(response.text()))
            watch.wait_js(_RENDERED, what=f"BokehJS rendering {app} (load {i})")
            if app == "echo":
                watch.set("text_input", "value", f"browser {i}")
                watch.wait_prop("output", "text", f"BROWSER {i}")
            else:
                watch.wait_js(
                    "() => (Bokeh.documents[0].get_model_by_name('info') || {}).text",
                    what="the hooks app's Div",
                )
                assert "seen_path=/hooks" in watch.get("info", "text")
                hooks_ids.append(session_id)
            watch.assert_clean()
        finally:
            context.close()
    created = cluster.hook_log.created()
    assert all(created[sid] == 1 for sid in hooks_ids), {sid: created[sid] for sid in hooks_ids}
    log = cluster.nginx.access_log[log_start:]
    upstreams = set(re.findall(r"^GET /(?:echo|hooks)(?:/ws)? \d+ upstream=(\S+)$", log, re.MULTILINE))
    assert upstreams == {f"127.0.0.1:{cluster.a.port}", f"127.0.0.1:{cluster.b.port}"}, log
    static = re.findall(r"^GET /static/bokeh/js/bokeh.min.js \d+ upstream=(\S+)$", log, re.MULTILINE)
    assert static and set(static) == {"-"}, f"BokehJS did not come from nginx's static files: {static}"


def test_pull_session_on_a_shown_and_changed_in_a_browser_on_b(
    cluster, page: Page, client_thread: ClientThread
) -> None:
    from bokehserve_django.embed import pull_session

    session = client_thread.call(pull_session, None, "echo", url=cluster.a.url + "/echo")
    try:
        document = session.document

        def set_value() -> None:
            document.get_model_by_name("text_input").value = "made through A"

        client_thread.call(set_value)
        output = document.get_model_by_name("output")
        assert client_thread.wait_for(session, lambda: output.text == "MADE THROUGH A"), output.text

        watch = PageWatcher(page)
        response = page.goto(f"{cluster.b.url}/echo?bokeh-session-id={session.id}")
        assert response is not None and response.status == 200, response and response.status
        watch.wait_js(_RENDERED, what="BokehJS rendering the session on B")
        assert watch.get("text_input", "value") == "made through A"
        assert watch.get("output", "text") == "MADE THROUGH A"

        # A change in the browser (on B) runs the callback on the owner (A), and the client on A sees it.
        watch.set("text_input", "value", "typed on B")
        watch.wait_prop("output", "text", "TYPED ON B")
        assert client_thread.wait_for(session, lambda: output.text == "TYPED ON B"), (
            f"the browser's change did not reach bokeh.client on A: output.text == {output.text!r}"
        )
        watch.assert_clean()
    finally:
        client_thread.call(session.close)
    assert opened_locally(cluster.a, session.id, "echo")
    assert relayed(cluster.b, session.id, "echo"), "the browser's WebSocket on B was not relayed to A"
    assert not opened_locally(cluster.b, session.id, "echo"), "B created its own copy of A's session"


#: The Shout model's own view (tests/extension_package's script) marks its element.
_SHOUT_RENDERED = "() => (document.querySelector('[data-shout]') || {dataset: {}}).dataset.shout"


def test_extension_script_comes_from_collectstatic_output_behind_nginx(cluster, page: Page) -> None:
    """A Bokeh extension shipped as a package, after collectstatic: nginx serves its script from STATIC_ROOT."""
    assert (cluster.static_root / "extensions" / "bokehserve_test_ext" / "bokehserve_test_ext.js").is_file()
    log_start = len(cluster.nginx.access_log)
    watch = PageWatcher(page)
    response = page.goto(f"{cluster.nginx.url}/shout")
    assert response is not None and response.status == 200
    assert watch.wait_js(_SHOUT_RENDERED, what="the Shout model's view") == "HELLO FROM AN EXTENSION"
    watch.assert_clean()
    log = cluster.nginx.access_log[log_start:]
    served = re.findall(
        r"^GET /static/extensions/bokehserve_test_ext/bokehserve_test_ext.js (\d+) upstream=(\S+)$", log, re.MULTILINE
    )
    assert served == [("200", "-")], f"the extension's script did not come from nginx's static files:\n{log}"

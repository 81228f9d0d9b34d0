"""A Bokeh extension shipped as a package renders in Chromium, its script from STATIC_URL (runbokeh).

The same page behind nginx, after collectstatic, is tested in tests/cluster/test_browser.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from tests.browser.helpers import PageWatcher
from tests.live import LiveServer

pytestmark = pytest.mark.browser

#: The Shout model's own view (tests/extension_package's script) marks its element.
SHOUT_RENDERED = """() => {
    const el = document.querySelector('[data-shout]');
    return el != null ? el.dataset.shout : null;
}"""


@pytest.fixture(scope="module")
def tests_server() -> Iterator[LiveServer]:
    server = LiveServer()  # tests/settings.py: the shout app, STATIC_URL /static/
    yield server
    server.stop()


def test_extension_model_renders_with_its_script_from_static_files(page: Page, tests_server: LiveServer) -> None:
    watch = PageWatcher(page, server_log=lambda: tests_server.log)
    scripts: list[str] = []
    page.on("response", lambda response: scripts.append(f"{response.status} {response.url}"))
    page.goto(tests_server.url + "/shout")
    shout = watch.wait_js(SHOUT_RENDERED, what="the Shout model's view")
    assert shout == "HELLO FROM AN EXTENSION"
    extension = [s for s in scripts if "/extensions/bokehserve_test_ext/" in s]
    assert len(extension) == 1 and extension[0].startswith(
        f"200 {tests_server.url}/static/extensions/bokehserve_test_ext/bokehserve_test_ext.js?v="
    ), scripts
    watch.assert_clean()

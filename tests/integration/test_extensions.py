"""Bokeh extensions shipped as packages: found, offered to staticfiles, and loaded by pages from STATIC_URL.

The extension is tests/extension_package/bokehserve_test_ext (on sys.path through
tests/settings.py); the ``shout`` app uses its one model. Panel, when installed, is a second,
real extension. The browser side (the model renders, in development and behind nginx after
collectstatic) is in tests/browser/test_extensions_browser.py and tests/cluster.
"""

from __future__ import annotations

import importlib.util
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from bokeh.util.paths import bokehjs_path
from django.core.management import call_command

from bokehserve_django.extensions import bokeh_serve_static_file, installed_extensions
from bokehserve_django.finders import BokehJSFinder
from tests.live import LiveServer

TEST_EXTENSION_DIST = Path(__file__).resolve().parents[1] / "extension_package" / "bokehserve_test_ext" / "dist"
SCRIPT_RE = re.compile(r'<script[^>]+src="([^"]+)"')
JS_URLS_RE = re.compile(r"const js_urls = (\[.*?\]);")
needs_panel = pytest.mark.skipif(importlib.util.find_spec("panel") is None, reason="panel is not installed")



def scripts_of(html: str) -> list[str]:
    return SCRIPT_RE.findall(html)


def fetch(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


# ---------------------------------------------------------------------------
# Discovery and the finder
# ---------------------------------------------------------------------------


def test_installed_extensions_resolve_the_built_script_folder_as_bokeh_does() -> None:
    found = installed_extensions()
    # package.json's "main" is dist/bokehserve_test_ext.js: its folder is what is served.
    assert found["bokehserve_test_ext"] == TEST_EXTENSION_DIST
    assert "bokeh" not in found  # BokehJS itself is not an extension


@needs_panel
def test_panel_is_found_as_an_extension() -> None:
    import panel

    assert installed_extensions()["panel"] == Path(panel.__file__).parent / "dist"


def test_finder_offers_extensions_under_extensions_prefix() -> None:
    finder = BokehJSFinder()
    assert finder.find("extensions/bokehserve_test_ext/bokehserve_test_ext.js") == str(
        TEST_EXTENSION_DIST / "bokehserve_test_ext.js"
    )
    assert finder.find("bokeh/js/bokeh.min.js").endswith("bokeh/server/static/js/bokeh.min.js")
    assert finder.find("extensions/no_such_package/x.js") == []
    listed = {path for path, storage in finder.list([]) if storage.prefix == "extensions/bokehserve_test_ext"}
    assert listed == {"bokehserve_test_ext.js"}


def test_collectstatic_copies_extensions(tmp_path, settings) -> None:
    settings.STATIC_ROOT = str(tmp_path)
    call_command("collectstatic", interactive=False, verbosity=0, link=True)
    copied = tmp_path / "extensions" / "bokehserve_test_ext" / "bokehserve_test_ext.js"
    assert copied.read_bytes() == (TEST_EXTENSION_DIST / "bokehserve_test_ext.js").read_bytes()


def test_bokeh_serve_layout_maps_to_extension_and_bokehjs_folders() -> None:
    assert bokeh_serve_static_file("extensions/bokehserve_test_ext/bokehserve_test_ext.js") == (
        TEST_EXTENSION_DIST,
        "bokehserve_test_ext.js",
    )
    root, inner = bokeh_serve_static_file("js/bokeh.min.js")
    assert (root / inner).is_file()
    assert bokeh_serve_static_file("extensions/no_such_package/x.js") is None
    assert bokeh_serve_static_file("extensions/bokehserve_test_ext") is None


def test_our_manifest_storage_still_refuses_missing_files_outside_extensions(tmp_path, settings) -> None:
    from bokehserve_django.storage import ManifestStaticFilesStorage

    storage = ManifestStaticFilesStorage(location=str(tmp_path))
    (tmp_path / "extensions" / "x").mkdir(parents=True)
    assert storage.hashed_name("extensions/x/missing-font.woff2") == "extensions/x/missing-font.woff2"
    (tmp_path / "bokeh" / "js").mkdir(parents=True)
    assert storage.hashed_name("bokeh/js/missing.map") == "bokeh/js/missing.map"
    with pytest.raises(ValueError, match="could not be found"):
        storage.hashed_name("css/missing-font.woff2")


# ---------------------------------------------------------------------------
# URLs in pages and autoload.js
# ---------------------------------------------------------------------------


def extension_script(urls: list[str]) -> str:
    [url] = [u for u in urls if "bokehserve_test_ext" in u]
    return url


async def test_page_loads_the_extension_from_static_files(async_client, fresh_runtime) -> None:
    html = (await async_client.get("/shout")).content.decode()
    assert "localhost:5006" not in html
    url = extension_script(scripts_of(html))
    assert re.fullmatch(r"/static/extensions/bokehserve_test_ext/bokehserve_test_ext\.js\?v=[0-9a-f]{64}", url), url
    # After BokehJS, which registers the plugin mechanism the script calls.
    assert scripts_of(html).index(url) > scripts_of(html).index("/static/bokeh/js/bokeh.min.js")


async def test_page_extension_urls_follow_a_static_url_on_another_host(async_client, fresh_runtime, settings) -> None:
    settings.STATIC_URL = "https://assets.example/site-static/"
    scripts = scripts_of((await async_client.get("/shout")).content.decode())
    assert extension_script(scripts).startswith(
        "https://assets.example/site-static/extensions/bokehserve_test_ext/bokehserve_test_ext.js?v="
    )
    assert "https://assets.example/site-static/bokeh/js/bokeh.min.js" in scripts


MANIFEST_STORAGE = "bokehserve_django.storage.ManifestStaticFilesStorage"


async def test_manifest_storage_gives_hashed_extension_names_without_query(
    async_client, fresh_runtime, settings, tmp_path
) -> None:
    settings.DEBUG = False
    settings.STATIC_ROOT = str(tmp_path)
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": MANIFEST_STORAGE}}
    # Django's own manifest storage fails this collectstatic: bokeh's compiler.js and (when
    # installed) Panel's bundled KaTeX CSS name files that do not exist (see storage.py).
    await sync_to_async(call_command)("collectstatic", interactive=False, verbosity=0)
    url = extension_script(scripts_of((await async_client.get("/shout")).content.decode()))
    assert re.fullmatch(r"/static/extensions/bokehserve_test_ext/bokehserve_test_ext\.[0-9a-f]{12}\.js", url), url
    assert (tmp_path / url.removeprefix("/static/")).is_file()


async def test_autoload_js_loads_the_extension_with_absolute_urls(async_client, fresh_runtime) -> None:
    response = await async_client.get(
        "/shout/autoload.js",
        {"bokeh-autoload-element": "x", "bokeh-absolute-url": "https://apps.example:8443/shout"},
    )
    assert response.status_code == 200
    urls = __import__("json").loads(JS_URLS_RE.search(response.content.decode()).group(1))
    assert extension_script(urls).startswith(
        "https://apps.example:8443/static/extensions/bokehserve_test_ext/bokehserve_test_ext.js?v="
    ), urls
    assert not any("localhost:5006" in u for u in urls)


@needs_panel
async def test_extension_models_own_relative_urls_come_from_static_files_too(async_client, fresh_runtime) -> None:
    # Panel's models name their scripts "static/extensions/panel/...", relative to the page:
    # on a page at /echo/ or under a prefix that would miss. Once panel is imported, every
    # page of the process loads them (bokeh's Resources collect them from all models).
    import panel  # noqa: F401

    html = (await async_client.get("/echo")).content.decode()
    panel_urls = [u for u in scripts_of(html) if "extensions/panel/" in u]
    assert panel_urls, scripts_of(html)
    assert all(u.startswith("/static/extensions/panel/") for u in panel_urls), panel_urls


# ---------------------------------------------------------------------------
# A real server: STATIC_URL files, and bokeh serve's layout under the prefix
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    """This module's own runbokeh process, not the folder's shared one.

    Once an app of a process imports the extension's model (shout does), every page that
    process serves lists the extension's script: the shared server's other users expect none.
    """
    live = LiveServer()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def prefixed():
    server = LiveServer("--prefix", "apps")
    yield server
    server.stop()


def test_live_page_scripts_all_answer_and_name_no_other_server(server) -> None:
    status, body, _ = fetch(server.url + "/shout")
    assert status == 200
    html = body.decode()
    assert "localhost:5006" not in html
    for script in scripts_of(html):
        assert fetch(server.url + script)[0] == 200, script
    status, body, content_type = fetch(server.url + extension_script(scripts_of(html)))
    assert body == (TEST_EXTENSION_DIST / "bokehserve_test_ext.js").read_bytes()
    assert "javascript" in content_type


def test_bokeh_serve_layout_answers_where_static_url_is_the_same_path(server) -> None:
    # STATIC_URL is /static/ and there is no prefix: the static files handler answers
    # /static/..., from the finders first, then from bokeh serve's layout.
    assert fetch(server.url + "/static/extensions/bokehserve_test_ext/bokehserve_test_ext.js")[0] == 200
    status, body, _ = fetch(server.url + "/static/js/bokeh.min.js")
    assert status == 200 and body == (Path(bokehjs_path()) / "js" / "bokeh.min.js").read_bytes()


def test_bokeh_serve_layout_answers_under_the_prefix(prefixed) -> None:
    base = prefixed.url + "/apps/static/"
    status, body, _ = fetch(base + "extensions/bokehserve_test_ext/bokehserve_test_ext.js")
    assert status == 200 and b"register_plugin" in body
    assert fetch(base + "js/bokeh.min.js")[0] == 200
    # The page's own URLs still come from STATIC_URL.
    html = fetch(prefixed.url + "/apps/shout")[1].decode()
    assert extension_script(scripts_of(html)).startswith("/static/extensions/bokehserve_test_ext/")


@pytest.mark.parametrize(
    "path",
    [
        "extensions/bokehserve_test_ext/../package.json",
        "extensions/bokehserve_test_ext/%2e%2e/package.json",
        "extensions/no_such_package/x.js",
        "extensions/bokehserve_test_ext/",
        "js/../../__init__.py",
        "js/no-such-file.js",
    ],
)
def test_bokeh_serve_layout_refuses_odd_paths_with_a_plain_404(prefixed, path) -> None:
    status, body, content_type = fetch(prefixed.url + "/apps/static/" + path)
    assert status == 404, body[:200]
    assert content_type.startswith("text/plain") and b"Traceback" not in body

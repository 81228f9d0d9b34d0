"""HTTP side of the apps: pages, autoload.js, metadata, app static files, the index, session selection.

Most tests use Django's async test client in-process (the session runtime then runs on the
test's loop and is shut down after each test); the static-file and resource URL checks also
run against a real runbokeh process, where the ASGI static files handler is in front.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from bokeh.document import Document
from bokeh.protocol import Protocol
from bokeh.util.token import get_session_id
from channels.testing import WebsocketCommunicator

from bokehserve_django.sessions import runtime
from tests.asgi import application
from tests.bokeh_client import RawBokehClient, make_token
from tests.live import LiveServer

PROTOCOL = Protocol()
TIMEOUT = 10
WS_HEADERS = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
TOKEN_RE = re.compile(r'"token":\s*"([A-Za-z0-9_\-.]+)"')
SCRIPT_RE = re.compile(r'<script[^>]+src="([^"]+)"')
RECOVER_JS_URL = "/static/bokehserve_django/recover.js"


# ---------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------



@pytest.fixture
def hook_log(tmp_path, monkeypatch) -> Path:
    """The file tests/apps/hooks records lifecycle calls to."""
    path = tmp_path / "hooks.log"
    path.touch()
    monkeypatch.setenv("BOKEHSERVE_TEST_HOOK_LOG", str(path))
    return path


def sessions_of(app: str) -> list[Any]:
    return runtime.app(app).sessions


def token_in(html: str) -> str:
    match = TOKEN_RE.search(html)
    assert match, "no session token in the response"
    return match.group(1)


def page_text(response: Any) -> str:
    return response.content.decode("utf-8")


async def pull_document(token: str, path: str) -> Document:
    """Open the WebSocket with ``token`` (in-process), PULL the document and close."""
    communicator = WebsocketCommunicator(application, path, headers=WS_HEADERS, subprotocols=["bokeh", token])
    try:
        connected, subprotocol = await communicator.connect(timeout=TIMEOUT)
        assert connected, f"WebSocket refused ({subprotocol})"

        async def recv() -> Any:
            header = await communicator.receive_from(TIMEOUT)
            metadata = await communicator.receive_from(TIMEOUT)
            content = await communicator.receive_from(TIMEOUT)
            message = PROTOCOL.assemble(header, metadata, content)
            for _ in range(message.header.get("num_buffers", 0)):
                buffer_header = json.loads(await communicator.receive_from(TIMEOUT))
                message.assemble_buffer(buffer_header, await communicator.receive_from(TIMEOUT))
            return message

        assert (await recv()).msgtype == "ACK"
        request = PROTOCOL.create("PULL-DOC-REQ")
        for frame in (request.header_json, request.metadata_json, request.content_json):
            await communicator.send_to(text_data=frame)
        reply = await recv()
        assert reply.msgtype == "PULL-DOC-REPLY"
        doc = Document()
        reply.push_to_document(doc)
        return doc
    finally:
        await communicator.disconnect(timeout=TIMEOUT)


def raw_get(server: LiveServer, path: str, method: str = "GET") -> tuple[int, bytes]:
    """A request with the path sent exactly as given (no client-side normalisation of ``..``)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


STATIC_APP_MAIN = textwrap.dedent(
    """
    from bokeh.io import curdoc
    from bokeh.models import Div

    curdoc().add_root(Div(name="hello", text="static app"))
    """
)


@pytest.fixture(scope="module")
def static_app(tmp_path_factory) -> Path:
    """A directory app with a static/ folder, and a secret file next to it that must stay private."""
    root = tmp_path_factory.mktemp("apps")
    app = root / "staticapp"
    (app / "static").mkdir(parents=True)
    (app / "main.py").write_text(STATIC_APP_MAIN)
    (app / "static" / "hello.txt").write_text("hello from static\n")
    (app / "secret.txt").write_text("TOP-SECRET app file\n")
    (root / "secret.txt").write_text("TOP-SECRET outside file\n")
    return app


@pytest.fixture(scope="module")
def static_server(static_app):
    """runbokeh serving tests/settings.py's apps plus the static app."""
    live = LiveServer(str(static_app))
    yield live
    live.stop()


@pytest.fixture
def with_static_app(settings, static_app):
    settings.BOKEHSERVE = {
        **settings.BOKEHSERVE,
        "APPS": {**settings.BOKEHSERVE["APPS"], "staticapp": static_app},
    }
    return static_app


# ---------------------------------------------------------------------------
# The app page
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/echo", "/echo/"])
async def test_app_page(async_client, fresh_runtime, path):
    response = await async_client.get(path)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = page_text(response)
    token = token_in(html)
    assert get_session_id(token) in runtime.app("echo")
    scripts = SCRIPT_RE.findall(html)
    # The page recovery script first (it must wrap WebSocket before BokehJS opens one).
    assert scripts[0] == RECOVER_JS_URL and "/static/bokeh/js/bokeh.min.js" in scripts, scripts
    # As under bokeh serve, a page also loads the scripts of every extension whose models
    # this process has imported (the shout app's, Panel's, once other tests used them).
    assert all(src.startswith(("/static/bokeh/js/", "/static/extensions/")) for src in scripts[1:]), scripts
    assert "data-root-id=" in html
    # No document state in the HTML: it comes over the WebSocket.
    assert "text_input" not in html


async def test_each_page_request_opens_a_new_session(async_client, fresh_runtime):
    first = token_in(page_text(await async_client.get("/echo")))
    second = token_in(page_text(await async_client.get("/echo")))
    assert get_session_id(first) != get_session_id(second)
    assert len(sessions_of("echo")) == 2


async def test_page_session_is_the_one_the_websocket_joins(async_client, fresh_runtime):
    token = token_in(page_text(await async_client.get("/echo")))
    doc = await pull_document(token, "/echo/ws")
    assert doc.get_model_by_name("text_input") is not None
    assert len(sessions_of("echo")) == 1


def test_page_resources_answer_on_the_live_server(server):
    with urllib.request.urlopen(server.url + "/echo", timeout=TIMEOUT) as response:
        assert response.status == 200
        html = response.read().decode()
    scripts = SCRIPT_RE.findall(html)
    assert scripts[0] == RECOVER_JS_URL, scripts
    assert scripts[1:] and all(src.startswith("/static/bokeh/js/") for src in scripts[1:]), scripts
    for src in scripts:
        with urllib.request.urlopen(server.url + src, timeout=TIMEOUT) as response:
            assert response.status == 200, src
            assert "javascript" in response.headers["Content-Type"], src
            assert len(response.read()) > 1000, src


def test_slash_page_on_the_live_server(server):
    with urllib.request.urlopen(server.url + "/echo/", timeout=TIMEOUT) as response:
        assert response.status == 200
        token_in(response.read().decode())


# ---------------------------------------------------------------------------
# autoload.js
# ---------------------------------------------------------------------------


def assert_cors(response: Any, origin: str = "*") -> None:
    """Any page may load the script; only allowed origins may send credentials and read it."""
    assert response["Access-Control-Allow-Origin"] == origin
    assert response["Access-Control-Allow-Headers"] == "*"
    if origin == "*":
        assert "Access-Control-Allow-Credentials" not in response
    else:
        assert response["Access-Control-Allow-Credentials"] == "true"


async def test_autoload_js(async_client, fresh_runtime):
    response = await async_client.get("/echo/autoload.js", {"bokeh-autoload-element": "x"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert_cors(response)
    js = page_text(response)
    token = token_in(js)
    assert get_session_id(token) in runtime.app("echo")
    assert '"elementid":"x"' in js
    assert "/static/bokeh/js/bokeh.min.js" in js


async def test_autoload_js_allows_credentials_only_for_allowed_origins(async_client, fresh_runtime, settings):
    settings.BOKEHSERVE = {**settings.BOKEHSERVE, "ALLOWED_ORIGINS": ["embedder.example"]}
    async_client.cookies["some"] = "cookie"
    response = await async_client.get(
        "/echo/autoload.js", {"bokeh-autoload-element": "x"}, headers={"Origin": "https://embedder.example"}
    )
    assert response.status_code == 200
    assert_cors(response, "https://embedder.example")
    response = await async_client.get(
        "/echo/autoload.js", {"bokeh-autoload-element": "x"}, headers={"Origin": "https://evil.example"}
    )
    assert_cors(response, "*")


async def test_autoload_js_without_element_is_400_and_opens_no_session(async_client, fresh_runtime):
    response = await async_client.get("/echo/autoload.js")
    assert response.status_code == 400
    assert_cors(response)
    assert sessions_of("echo") == []


async def test_autoload_js_options_preflight(async_client, fresh_runtime):
    response = await async_client.options(
        "/echo/autoload.js",
        headers={"Origin": "https://embedder.example", "Access-Control-Request-Headers": "x-custom"},
    )
    assert response.status_code == 200
    assert_cors(response)
    assert "GET" in response["Access-Control-Allow-Methods"]
    assert sessions_of("echo") == []


async def test_autoload_js_escapes_the_element_id(async_client, fresh_runtime):
    element = 'x";alert(1);//</script>'
    response = await async_client.get("/echo/autoload.js", {"bokeh-autoload-element": element})
    assert response.status_code == 200
    js = page_text(response)
    assert element not in js
    assert 'x";alert(1)' not in js


async def test_autoload_js_refuses_a_non_http_absolute_url(async_client, fresh_runtime):
    response = await async_client.get(
        "/echo/autoload.js", {"bokeh-autoload-element": "x", "bokeh-absolute-url": "javascript:alert(1)"}
    )
    assert response.status_code == 400
    assert sessions_of("echo") == []


async def test_autoload_js_with_garbage_token_is_403_and_opens_no_session(async_client, fresh_runtime):
    response = await async_client.get(
        "/echo/autoload.js", {"bokeh-autoload-element": "x", "bokeh-token": "garbage"}
    )
    assert response.status_code == 403
    assert sessions_of("echo") == []


async def test_autoload_js_with_session_id_header_joins_that_session(async_client, fresh_runtime):
    session_id = get_session_id(make_token())
    response = await async_client.get(
        "/echo/autoload.js", {"bokeh-autoload-element": "x"}, headers={"Bokeh-Session-Id": session_id}
    )
    assert response.status_code == 200
    assert get_session_id(token_in(page_text(response))) == session_id
    assert [s.id for s in sessions_of("echo")] == [session_id]


# ---------------------------------------------------------------------------
# The page recovery script (recover.js) in every resources mode
# ---------------------------------------------------------------------------

JS_URLS_RE = re.compile(r"const js_urls = (\[.*?\]);")


def autoload_js_urls(js: str) -> list[str]:
    match = JS_URLS_RE.search(js)
    assert match, js[:2000]
    return json.loads(match.group(1))


async def test_autoload_js_loads_recover_js_first_with_absolute_urls(async_client, fresh_runtime):
    response = await async_client.get(
        "/echo/autoload.js", {"bokeh-autoload-element": "x", "bokeh-absolute-url": "http://bokeh.example:8000/echo"}
    )
    assert response.status_code == 200
    urls = autoload_js_urls(page_text(response))
    # autoload.js loads its URLs in order (async = false): recover.js runs before BokehJS.
    assert urls[0] == "http://bokeh.example:8000" + RECOVER_JS_URL, urls
    assert "http://bokeh.example:8000/static/bokeh/js/bokeh.min.js" in urls, urls
    assert all(url.startswith("http://bokeh.example:8000/static/") for url in urls), urls


async def test_autoload_js_without_resources_loads_no_recover_js(async_client, fresh_runtime):
    # resources=none is for pages that load BokehJS themselves; they must load recover.js
    # themselves too (a documented limit, docs/page-recovery.md).
    response = await async_client.get("/echo/autoload.js", {"bokeh-autoload-element": "x", "resources": "none"})
    assert response.status_code == 200
    js = page_text(response)
    assert autoload_js_urls(js) == []
    assert "recover.js" not in js


async def test_cdn_page_loads_recover_js_from_static_files_before_bokehjs(async_client, fresh_runtime, settings):
    settings.BOKEHSERVE = {**settings.BOKEHSERVE, "RESOURCES": "cdn"}
    scripts = SCRIPT_RE.findall(page_text(await async_client.get("/echo")))
    assert scripts[0] == RECOVER_JS_URL, scripts
    # (Scripts of extension models this process imported may stand between; see test_extensions.py.)
    bokehjs = [src for src in scripts[1:] if "extensions/" not in src]
    assert bokehjs[0].startswith("https://cdn.bokeh.org/bokeh/release/bokeh-"), scripts


async def test_cdn_autoload_js_loads_recover_js_from_this_server(async_client, fresh_runtime, settings):
    settings.BOKEHSERVE = {**settings.BOKEHSERVE, "RESOURCES": "cdn"}
    response = await async_client.get(
        "/echo/autoload.js", {"bokeh-autoload-element": "x", "bokeh-absolute-url": "https://bokeh.example/echo"}
    )
    urls = autoload_js_urls(page_text(response))
    assert urls[0] == "https://bokeh.example" + RECOVER_JS_URL, urls
    assert [url for url in urls[1:] if "extensions/" not in url][0].startswith("https://cdn.bokeh.org/"), urls


async def test_inline_page_inlines_recover_js_before_bokehjs(async_client, fresh_runtime, settings):
    settings.BOKEHSERVE = {**settings.BOKEHSERVE, "RESOURCES": "inline"}
    html = page_text(await async_client.get("/echo"))
    # Only extension models' own script URLs (Panel's, once imported) are not inlined, as in bokeh.
    assert [src for src in SCRIPT_RE.findall(html) if "extensions/" not in src] == []
    assert "/* BEGIN recover.js */" in html
    assert html.index("/* BEGIN recover.js */") < html.index("/* BEGIN bokeh.min.js */")
    assert html.count("/* BEGIN recover.js */") == 1


async def test_recover_js_is_inlined_when_static_files_cannot_name_it(async_client, fresh_runtime, settings, tmp_path):
    # A "cdn" site with a manifest storage that never ran collectstatic: the storage cannot
    # give recover.js a URL, and the page must still render (with the script inline).
    settings.DEBUG = False
    settings.STATIC_ROOT = str(tmp_path)
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"}}
    settings.BOKEHSERVE = {**settings.BOKEHSERVE, "RESOURCES": "cdn"}
    response = await async_client.get("/echo")
    assert response.status_code == 200
    html = page_text(response)
    assert RECOVER_JS_URL not in html
    assert [src for src in SCRIPT_RE.findall(html) if "extensions/" not in src][0].startswith("https://cdn.bokeh.org/")
    assert html.count("/* BEGIN recover.js */") == 1


def test_collectstatic_copies_recover_js(tmp_path, settings):
    from django.core.management import call_command

    settings.STATIC_ROOT = str(tmp_path)
    call_command("collectstatic", interactive=False, verbosity=0)
    copied = tmp_path / "bokehserve_django" / "recover.js"
    source = Path(__file__).resolve().parents[2] / "bokehserve_django" / "static" / "bokehserve_django" / "recover.js"
    assert copied.read_bytes() == source.read_bytes()


# ---------------------------------------------------------------------------
# metadata, index, unknown apps
# ---------------------------------------------------------------------------


async def test_metadata(async_client, fresh_runtime):
    response = await async_client.get("/echo/metadata")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert json.loads(response.content) == {"url": "/echo", "data": {}}
    assert sessions_of("echo") == []


async def test_index_lists_the_apps(async_client, fresh_runtime):
    response = await async_client.get("/")
    assert response.status_code == 200
    html = page_text(response)
    assert 'href="/echo"' in html
    assert 'href="/hooks"' in html


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "no-debug"])
@pytest.mark.parametrize(
    "path",
    [
        "/no-such-app",
        "/no-such-app/",
        "/no-such-app/autoload.js",
        "/no-such-app/metadata",
        "/no-such-app/static/x.js",
    ],
)
async def test_unknown_app_is_404_without_traceback(async_client, fresh_runtime, settings, debug, path):
    settings.DEBUG = debug
    response = await async_client.get(path)
    assert response.status_code == 404
    body = page_text(response)
    assert "Traceback" not in body
    assert "site-packages" not in body


def test_unknown_app_on_the_live_server(server):
    status, body = raw_get(server, "/no-such-app")
    assert status == 404
    assert b"Traceback" not in body


# ---------------------------------------------------------------------------
# App static files: odd paths are 400/404, never 500, never a file outside static/
# ---------------------------------------------------------------------------


async def test_app_static_file_is_served(async_client, fresh_runtime, with_static_app):
    response = await async_client.get("/staticapp/static/hello.txt")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"hello from static\n"


# Paths that try to leave a static folder: tests/security/test_static_paths.py.


def test_app_static_file_on_the_live_server(static_server):
    status, body = raw_get(static_server, "/staticapp/static/hello.txt")
    assert (status, body) == (200, b"hello from static\n")


# ---------------------------------------------------------------------------
# Session selection: refused requests create no session
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {"bokeh-token": "garbage"},
        {"bokeh-token": "eyJzZXNzaW9uX2lkIjogMX0"},  # {"session_id": 1}
        {"bokeh-token": "a.b.c"},
        {"bokeh-token": ""},
        {"bokeh-session-id": "../../etc"},
        {"bokeh-session-id": "x" * 500},
    ],
    ids=["garbage", "non-string-id", "three-segments", "empty", "path-id", "long-id"],
)
@pytest.mark.parametrize("app", ["echo", "hooks"])
async def test_bad_session_selection_is_403_and_creates_no_session(
    async_client, fresh_runtime, hook_log, app, query
):
    response = await async_client.get(f"/{app}", query)
    assert response.status_code == 403
    assert "Traceback" not in page_text(response)
    assert sessions_of(app) == []
    assert "on_session_created" not in hook_log.read_text()


async def test_expired_token_is_403(async_client, fresh_runtime):
    response = await async_client.get("/echo", {"bokeh-token": make_token(expiration=-10)})
    assert response.status_code == 403
    assert sessions_of("echo") == []


@pytest.mark.parametrize("path", ["/echo", "/echo/autoload.js"])
async def test_session_id_in_query_and_header_is_403(async_client, fresh_runtime, path):
    session_id = get_session_id(make_token())
    response = await async_client.get(
        path,
        {"bokeh-session-id": session_id, "bokeh-autoload-element": "x"},
        headers={"Bokeh-Session-Id": session_id},
    )
    assert response.status_code == 403
    assert sessions_of("echo") == []


async def test_session_id_and_token_together_is_403(async_client, fresh_runtime):
    token = make_token()
    response = await async_client.get(
        "/echo", {"bokeh-session-id": get_session_id(token), "bokeh-token": token}
    )
    assert response.status_code == 403
    assert sessions_of("echo") == []


async def test_given_session_id_names_the_session(async_client, fresh_runtime):
    session_id = get_session_id(make_token())
    response = await async_client.get("/echo", {"bokeh-session-id": session_id})
    assert response.status_code == 200
    assert get_session_id(token_in(page_text(response))) == session_id
    again = await async_client.get("/echo", {"bokeh-session-id": session_id})
    assert get_session_id(token_in(page_text(again))) == session_id
    assert [s.id for s in sessions_of("echo")] == [session_id]


async def test_valid_token_reuses_its_session(async_client, fresh_runtime):
    token = token_in(page_text(await async_client.get("/echo")))
    response = await async_client.get("/echo", {"bokeh-token": token})
    assert response.status_code == 200
    assert len(sessions_of("echo")) == 1


# ---------------------------------------------------------------------------
# session_context: request arguments and the process_request payload
# ---------------------------------------------------------------------------


async def test_session_context_sees_arguments_and_process_request(async_client, fresh_runtime, hook_log):
    response = await async_client.get("/hooks", {"a": "1"})
    assert response.status_code == 200
    token = token_in(page_text(response))
    doc = await pull_document(token, "/hooks/ws")
    assert doc.get_model_by_name("info").text == "args=['a'] seen_path=/hooks"
    session_id = get_session_id(token)
    assert f"on_session_created {os.getpid()} {session_id}" in hook_log.read_text()


async def test_page_token_of_a_session_that_is_gone_closes_with_4010(async_client, fresh_runtime, hook_log):
    """The page's session is gone (reaped, or its process died): the page must reload, not get a
    fresh document under the old id (BokehJS cannot swap in another session's models)."""
    response = await async_client.get("/hooks", {"a": "1"})
    token = token_in(page_text(response))
    await runtime.shutdown()
    assert "on_session_destroyed" in hook_log.read_text()
    created_before = hook_log.read_text().count("on_session_created")
    communicator = WebsocketCommunicator(application, "/hooks/ws", headers=WS_HEADERS, subprotocols=["bokeh", token])
    try:
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        assert connected
        closed = await communicator.receive_output(TIMEOUT)
        assert closed["type"] == "websocket.close" and closed["code"] == 4010 and "reload" in closed["reason"]
    finally:
        await communicator.disconnect(timeout=TIMEOUT)
    assert hook_log.read_text().count("on_session_created") == created_before, "a gone session was re-created"


async def test_session_created_at_websocket_from_a_client_token_sees_its_request(async_client, fresh_runtime):
    """bokeh.client's case: a token not minted for a page creates its session at connect, with the
    request arguments of the WebSocket URL."""
    doc = await pull_document(make_token(), "/hooks/ws?a=1")
    assert doc.get_model_by_name("info").text == "args=['a'] seen_path=None"  # process_request runs for pages only


async def test_live_page_token_opens_the_page_session_over_websocket(server):
    """runbokeh end to end: the page of /hooks?a=1, then its WebSocket from the page's own origin."""

    def fetch_page() -> str:
        with urllib.request.urlopen(server.url + "/hooks?a=1", timeout=TIMEOUT) as response:
            return response.read().decode()

    token = token_in(await asyncio.to_thread(fetch_page))
    client = await RawBokehClient.connect(
        server.url.replace("http://", "ws://") + "/hooks/ws?a=1",
        token,
        origin=server.url,
        open_timeout=TIMEOUT,
    )
    try:
        assert client.ws.subprotocol == "bokeh"
        assert (await asyncio.wait_for(client.recv(), TIMEOUT)).msgtype == "ACK"
        await client.send(PROTOCOL.create("PULL-DOC-REQ"))
        reply = await asyncio.wait_for(client.recv_type("PULL-DOC-REPLY"), TIMEOUT)
        doc = Document()
        reply.push_to_document(doc)
        assert doc.get_model_by_name("info").text == "args=['a'] seen_path=/hooks"
    finally:
        await asyncio.wait_for(client.close(), TIMEOUT)


async def test_page_query_arguments_exclude_bokeh_parameters(async_client, fresh_runtime):
    session_id = get_session_id(make_token())
    response = await async_client.get("/hooks", {"a": "1", "b": "2", "bokeh-session-id": session_id})
    assert response.status_code == 200
    doc = await pull_document(token_in(page_text(response)), "/hooks/ws")
    assert doc.get_model_by_name("info").text == "args=['a', 'b'] seen_path=/hooks"

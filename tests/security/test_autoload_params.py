"""autoload.js: ``bokeh-app-path`` and ``bokeh-absolute-url`` cannot break out of the script.

bokeh's DOC_JS template writes both values between double quotes with no escaping
(``embed_items(docs_json, render_items, "{{ app_path }}", "{{ absolute_url }}")``), so with
bokeh serve a ``"`` in either ends the string and the rest runs as script on the embedding
page. Here both must be a URL path / an http(s) URL (400 otherwise, and no session is
opened), and what is accepted reaches BokehJS as JSON string literals that are also safe
inside HTML (no raw ``<``, ``>``, ``&``, ``'``, backslash escapes or line separators).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from bokehserve_django.sessions import runtime

#: The embed_items call, with each argument after render_items captured as one double-quoted literal.
EMBED_CALL = re.compile(r'embed_items\(docs_json, render_items((?:, "(?:[^"\\\n]|\\.)*")*)\);\n')
LITERAL = re.compile(r'"(?:[^"\\\n]|\\.)*"')
#: Characters that must never appear raw inside the literals (HTML-sensitive or JS line breaks).
UNSAFE_RAW = ("<", ">", "&", "'", "\u2028", "\u2029", "\n", "\r")

BREAKOUTS = [
    '/x"+alert(1)+"',
    '/x";alert(1);//',
    "/x</script><script>alert(1)</script>",
    "/x\\",
    '/x\\"+alert(1)+\\"',
    "/x\ny",
    "/x\ry",
    "/x\u2028alert(1)",
    "/x\u2029y",
    "/x y",
    "/x`${alert(1)}`",
    "x",  # not a path at all: BokehJS would glue it onto the host name
    "",
]

ABSOLUTE_BREAKOUTS = [
    'http://bokeh.example/x"+alert(1)+"',
    "http://bokeh.example/x</script>",
    "http://bokeh.example/x\\",
    "http://bokeh.example/x\u2028y",
    "http://bokeh.example/x\ny",
    "http://bokeh.example/x y",
    'http://bokeh.example"+alert(1)+"/x',
    "http://user:password@bokeh.example/x",
    "http://bokeh.example:99999/x",
    "http:///x",
    "javascript:alert(1)//http://bokeh.example",
    "//bokeh.example/x",
]


def embed_arguments(js: str) -> list[str]:
    """The values that the script passes to embed_items after render_items, decoded as JSON."""
    match = EMBED_CALL.search(js)
    assert match, f"embed_items call is not a sequence of plain string literals:\n{js[-1500:]}"
    literals = LITERAL.findall(match.group(1))
    for literal in literals:
        assert not any(c in literal for c in UNSAFE_RAW), literal
    return [json.loads(literal) for literal in literals]


#: Runs an autoload.js under node with a stub page: prints what embed_items received and
#: whether anything else called alert().
NODE_HARNESS = """
const calls = [];
const element = {};
for (const level of ["log", "debug", "info", "warn", "error"]) console[level] = () => {};
global.window = global;
global.alert = (...args) => calls.push(["alert", ...args]);
global.document = {
  readyState: "complete",
  getElementById: () => element,
  createElement: () => ({}),
  body: {appendChild() {}},
  head: {appendChild() {}},
};
global.Bokeh = {
  safely: (fn) => fn(),
  embed: {embed_items: (docs, items, ...rest) => calls.push(["embed_items", ...rest])},
};
const script = require("fs").readFileSync(0, "utf-8");
try { eval(script); } catch (e) { calls.push(["error", String(e)]); }
process.stdout.write(JSON.stringify(calls));
"""
NODE = shutil.which("node")


def run_in_node(js: str) -> list[list[str]]:
    """What the script did when run as a browser would run it (see NODE_HARNESS)."""
    result = subprocess.run([NODE, "-e", NODE_HARNESS], check=False, input=js, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def autoload(async_client, **params: str):
    return await async_client.get("/public/autoload.js", {"bokeh-autoload-element": "x", **params})


@pytest.mark.parametrize("app_path", BREAKOUTS)
async def test_an_app_path_that_is_no_url_path_is_refused(async_client, fresh_runtime, app_path) -> None:
    response = await autoload(async_client, **{"bokeh-app-path": app_path})
    assert response.status_code == 400, response.content[-500:]
    assert response["Content-Type"].startswith("text/plain")
    assert b"bokeh-app-path" in response.content
    assert runtime.app("public").sessions == []


@pytest.mark.parametrize("absolute_url", ABSOLUTE_BREAKOUTS)
async def test_an_absolute_url_that_is_no_http_url_is_refused(async_client, fresh_runtime, absolute_url) -> None:
    response = await autoload(async_client, **{"bokeh-absolute-url": absolute_url})
    assert response.status_code == 400, response.content[-500:]
    assert response["Content-Type"].startswith("text/plain")
    assert b"bokeh-absolute-url" in response.content
    assert runtime.app("public").sessions == []


@pytest.mark.parametrize(
    ("app_path", "absolute_url"),
    [
        ("/public", "http://127.0.0.1:8000/public"),
        ("/bokeh/public", "https://bokeh.example/bokeh/public"),
        # Legal URL characters that HTML or JavaScript treat specially: kept, but escaped.
        ("/a'b&c=d;e(f)*+,!$~:@%22", "https://bokeh.example/x'y?a=1&b='2'#f"),
        ("/", "http://[::1]:5006/public"),
    ],
)
async def test_accepted_values_reach_bokehjs_unchanged_as_safe_literals(
    async_client, fresh_runtime, app_path, absolute_url
) -> None:
    response = await autoload(async_client, **{"bokeh-app-path": app_path, "bokeh-absolute-url": absolute_url})
    assert response.status_code == 200, response.content[-500:]
    assert embed_arguments(response.content.decode()) == [app_path, absolute_url]


async def test_the_default_app_path_is_slash(async_client, fresh_runtime) -> None:
    response = await autoload(async_client)
    assert response.status_code == 200
    assert embed_arguments(response.content.decode()) == ["/"]


needs_node = pytest.mark.skipif(NODE is None, reason="needs node to run the script")


@needs_node
@pytest.mark.parametrize(
    "params",
    [
        {"bokeh-app-path": "/a'b&c=d;e(f)*+,!$~:@%22"},
        {"bokeh-app-path": "/public", "bokeh-absolute-url": "https://bokeh.example/x'y?a=1&b='2'#f"},
    ],
)
async def test_the_script_hands_the_values_to_embed_items(async_client, fresh_runtime, params) -> None:
    response = await autoload(async_client, resources="none", **params)
    assert response.status_code == 200
    expected = [params["bokeh-app-path"], *([params["bokeh-absolute-url"]] if "bokeh-absolute-url" in params else [])]
    assert run_in_node(response.content.decode()) == [["embed_items", *expected]]


@needs_node
@pytest.mark.parametrize(
    "params",
    [{"bokeh-app-path": value} for value in BREAKOUTS[:3]]
    + [{"bokeh-absolute-url": value} for value in ABSOLUTE_BREAKOUTS[:2]],
)
async def test_no_breakout_value_gets_to_run_script(async_client, fresh_runtime, params) -> None:
    # With bokeh serve's handler these scripts call alert(1) on the embedding page.
    response = await autoload(async_client, resources="none", **params)
    if response.status_code == 200:
        # Neither injected code running nor a script broken into a syntax error.
        assert [call[0] for call in run_in_node(response.content.decode())] == ["embed_items"]
    else:
        assert response.status_code == 400

"""Path traversal on static files: a short plain 404, no debug page, no traceback, nothing from outside.

Two roots serve files: an app's ``static/`` folder (``/<app>/static/<path>``, views.app_static)
and the site's ``/static/`` (BokehJS and other staticfiles, which runbokeh serves in front of
Django through bokehserve_django.staticfiles). Every probe below tries to leave a root (``..``
plain, percent-encoded, double-encoded, with backslashes, as an absolute path) or carries a
NUL byte. Each must be answered 404 with a one-line text/plain body (bokeh serve answers 403 or
404), under DEBUG too (tests/settings.py has it on), and log no traceback: Django's own
``serve`` turns ``..`` into SuspiciousFileOperation, which is a 400 with the full debug page
(settings included) under DEBUG and an error with a traceback in the log.
"""

from __future__ import annotations

import http.client
import logging
import textwrap
from pathlib import Path

import pytest

from tests.live import LiveServer

TIMEOUT = 10
#: Longest body a refusal may have: one short line, never a page.
MAX_BODY = 100
#: Text of files outside the roots that the probes aim at; none may ever appear in an answer.
SECRET_MARKERS = (b"TOP-SECRET", b"SECRET_KEY", b"root:", b"import ")

#: Paths below /<app>/static/ that try to leave the app's static folder or carry a NUL byte.
APP_PROBES = [
    "../../etc/passwd",
    "../../../../../../../../etc/passwd",
    "../secret.txt",
    "../../secret.txt",
    "../main.py",
    "..",
    "../",
    "%2e%2e/secret.txt",
    "%2e%2e/%2e%2e/etc/passwd",
    ".%2e/secret.txt",
    "%2e./secret.txt",
    "..%2fsecret.txt",
    "..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2fsecret.txt",
    "..%5csecret.txt",
    "..%5c..%5cetc%5cpasswd",
    "%252e%252e%252fsecret.txt",
    "%252e%252e/%252e%252e/etc/passwd",
    "..%252fsecret.txt",
    "%c0%ae%c0%ae/secret.txt",
    "....//secret.txt",
    "..;/secret.txt",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "%00",
    "hello.txt%00",
    "hello.txt%00.png",
    "%00/../hello.txt",
    "../secret.txt%00",
    "nothere.txt",
]

#: Paths below /static/ aimed at files outside every staticfiles root (tests/settings.py,
#: bokeh's Python sources, /etc/passwd).
SITE_PROBES = [
    "../tests/settings.py",
    "../../tests/settings.py",
    "bokeh/js/../../../tests/settings.py",
    "bokeh/../../../../__init__.py",
    "bokeh/js/../../../../../../../../../etc/passwd",
    "%2e%2e/%2e%2e/etc/passwd",
    "bokeh/js/%2e%2e/%2e%2e/%2e%2e/%2e%2e/__init__.py",
    "..%2f..%2ftests%2fsettings.py",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "bokeh%2f..%2f..%2f..%2f..%2f__init__.py",
    "..%5c..%5cetc%5cpasswd",
    "%252e%252e/%252e%252e/etc/passwd",
    "bokeh/js/%252e%252e%252fbokeh.min.js",
    "%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "bokeh/js/%00",
    "bokeh/js/bokeh.min.js%00",
    "%00",
    "bokeh/js/nothere.js",
    "bokeh/",
]

STATIC_APP_MAIN = textwrap.dedent(
    """
    from bokeh.io import curdoc
    from bokeh.models import Div

    curdoc().add_root(Div(text="static app"))
    """
)


@pytest.fixture(scope="module")
def static_app(tmp_path_factory) -> Path:
    """A directory app ``staticapp`` with static/hello.txt, and secrets next to and above its static folder."""
    root = tmp_path_factory.mktemp("apps")
    app = root / "staticapp"
    (app / "static").mkdir(parents=True)
    (app / "main.py").write_text(STATIC_APP_MAIN)
    (app / "static" / "hello.txt").write_text("hello from static\n")
    (app / "secret.txt").write_text("TOP-SECRET app file\n")
    (root / "secret.txt").write_text("TOP-SECRET outside file\n")
    return app


@pytest.fixture
def with_static_app(security_settings, static_app) -> Path:
    security_settings.BOKEHSERVE = {
        **security_settings.BOKEHSERVE,
        "APPS": {**security_settings.BOKEHSERVE["APPS"], "staticapp": static_app},
    }
    return static_app


@pytest.fixture(scope="module")
def live(static_app):
    """runbokeh (DEBUG on, as tests/settings.py) serving the test apps plus ``staticapp``."""
    server = LiveServer(str(static_app))
    yield server
    server.stop()


def raw_get(server: LiveServer, path: str) -> tuple[int, str, bytes]:
    """GET ``path`` sent exactly as given (no client-side normalisation of ``..``)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def assert_plain_refusal(status: int, content_type: str, body: bytes) -> None:
    assert status == 404, (status, body[:300])
    assert content_type.startswith("text/plain"), (content_type, body[:300])
    assert len(body) <= MAX_BODY, body[:300]
    assert not any(marker in body for marker in SECRET_MARKERS), body


def response_body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


# In-process (Django's test client; no static files handler in front) ----------------------


async def test_an_app_static_file_is_served(async_client, fresh_runtime, with_static_app) -> None:
    response = await async_client.get("/staticapp/static/hello.txt")
    assert response.status_code == 200
    assert response_body(response) == b"hello from static\n"


@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize("app", ["staticapp", "hooks", "echo"])
@pytest.mark.parametrize("probe", APP_PROBES)
async def test_app_static_probes_get_a_plain_404(
    async_client, fresh_runtime, with_static_app, settings, caplog, debug, app, probe
) -> None:
    # hooks: a directory app without static/; echo: a one-file app (no static folder at all).
    settings.DEBUG = debug
    with caplog.at_level(logging.INFO):
        response = await async_client.get(f"/{app}/static/{probe}")
    assert_plain_refusal(response.status_code, response["Content-Type"], response_body(response))
    assert not [record for record in caplog.records if record.exc_info], caplog.text
    assert "Traceback" not in caplog.text


# Against runbokeh (daphne; /static/ served by bokehserve_django.staticfiles) ---------------------


def test_files_inside_the_roots_are_served_on_the_live_server(live) -> None:
    status, _content_type, body = raw_get(live, "/staticapp/static/hello.txt")
    assert (status, body) == (200, b"hello from static\n")
    status, content_type, body = raw_get(live, "/static/bokeh/js/bokeh.min.js")
    assert status == 200 and "javascript" in content_type and len(body) > 1000


@pytest.mark.parametrize("app", ["staticapp", "hooks", "echo"])
@pytest.mark.parametrize("probe", APP_PROBES)
def test_app_static_probes_get_a_plain_404_on_the_live_server(live, app, probe) -> None:
    assert_plain_refusal(*raw_get(live, f"/{app}/static/{probe}"))


@pytest.mark.parametrize("probe", SITE_PROBES)
def test_site_static_probes_get_a_plain_404_on_the_live_server(live, probe) -> None:
    assert_plain_refusal(*raw_get(live, f"/static/{probe}"))


def test_no_probe_left_a_traceback_in_the_live_log(live) -> None:
    for probe in APP_PROBES:
        raw_get(live, f"/staticapp/static/{probe}")
    for probe in SITE_PROBES:
        raw_get(live, f"/static/{probe}")
    log = live.log
    assert "Traceback" not in log, log[-3000:]
    assert "SuspiciousFileOperation" not in log, log[-3000:]

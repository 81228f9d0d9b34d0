"""runbokeh serves Panel apps next to Bokeh apps, under --prefix, with panel serve's --warm and
--static-dirs, and stops without Panel errors."""

from __future__ import annotations

import asyncio
import html
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("panel")

from bokeh.document import Document

from tests.bokeh_client import PROTOCOL, RawBokehClient
from tests.live import LiveServer

ASSETS = Path(__file__).resolve().parent / "assets"


@pytest.fixture(scope="module")
def prefixed():
    server = LiveServer(
        "--prefix", "bokeh", "--warm", "--static-dirs", f"assets={ASSETS}", settings="tests.panel.settings"
    )
    yield server
    server.stop()


def status(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=20).status
    except urllib.error.HTTPError as exc:
        return exc.code


def pull_texts(server: LiveServer, app: str, query: str = "") -> list[str]:
    """The page of ``app``, then its document over the WebSocket: the texts of its models."""
    page = urllib.request.urlopen(f"{server.url}/bokeh/{app}{query}", timeout=20).read().decode()
    token = re.search(r'"token":"([^"]+)"', page).group(1)

    async def pull() -> Document:
        client = await RawBokehClient.connect(f"{server.url.replace('http', 'ws')}/bokeh/{app}/ws", token)
        try:
            assert (await asyncio.wait_for(client.recv(), 10)).msgtype == "ACK"
            await client.send(PROTOCOL.create("PULL-DOC-REQ"))
            reply = await asyncio.wait_for(client.recv_type("PULL-DOC-REPLY"), 10)
            document = Document()
            reply.push_to_document(document)
            return document
        finally:
            await client.close()

    document = asyncio.run(pull())
    return [html.unescape(str(m.text)) for m in document.models if "text" in m.properties() and m.text]


def test_pn_state_base_url_is_the_prefix(prefixed) -> None:
    (text,) = pull_texts(prefixed, "request_info", "?x=1")
    assert "args: [('x', ['1'])]" in text
    assert "base_url: /bokeh/" in text
    assert "location: 127.0.0.1|/bokeh/request_info|?x=1" in text


def test_markdown_and_bokeh_apps_are_served_side_by_side(prefixed) -> None:
    assert any("from the markdown app" in text for text in pull_texts(prefixed, "page"))
    assert urllib.request.urlopen(f"{prefixed.url}/bokeh/echo", timeout=20).status == 200


def test_warm_runs_every_app_once_at_start_up(prefixed) -> None:
    from tests.panel.settings import BOKEHSERVE

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(f"Warmed app {n!r}" in prefixed.log for n in BOKEHSERVE["APPS"]):
        time.sleep(0.1)
    missing = [name for name in BOKEHSERVE["APPS"] if f"Warmed app {name!r}" not in prefixed.log]
    assert missing == [], prefixed.log


def test_static_dirs_are_served_under_the_prefix(prefixed) -> None:
    assert urllib.request.urlopen(f"{prefixed.url}/bokeh/assets/hello.txt", timeout=20).read() == b"static hello\n"
    assert status(f"{prefixed.url}/bokeh/assets/missing.txt") == 404


def test_stopping_destroys_panel_sessions_without_errors(prefixed) -> None:
    pull_texts(prefixed, "template")
    assert prefixed.stop() == 0
    assert "Session runtime stopped" in prefixed.log  # after destroying every session
    assert "ERROR" not in prefixed.log, prefixed.log
    assert "Traceback" not in prefixed.log, prefixed.log

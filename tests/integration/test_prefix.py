"""runbokeh --prefix: every URL of an app, the WebSocket included, moves under the prefix."""

from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.request

import pytest

from tests.bokeh_client import PROTOCOL, RawBokehClient
from tests.live import LiveServer


@pytest.fixture(scope="module")
def prefixed():
    server = LiveServer("--prefix", "bokeh")
    yield server
    server.stop()


def status(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_pages_and_websocket_live_under_the_prefix(prefixed) -> None:
    html = urllib.request.urlopen(prefixed.url + "/bokeh/echo", timeout=10).read().decode()
    assert status(prefixed.url + "/echo") == 404
    assert status(prefixed.url + "/bokeh/echo/metadata") == 200
    assert status(prefixed.url + "/bokeh/") == 200  # the index
    for script in re.findall(r'src="([^"]+bokeh[^"]*\.js)"', html):
        assert status(prefixed.url + script) == 200
    token = re.search(r'"token":"([^"]+)"', html).group(1)

    async def pull() -> str:
        client = await RawBokehClient.connect(prefixed.url.replace("http", "ws") + "/bokeh/echo/ws", token)
        try:
            assert (await asyncio.wait_for(client.recv(), 10)).msgtype == "ACK"
            await client.send(PROTOCOL.create("PULL-DOC-REQ"))
            return (await asyncio.wait_for(client.recv_type("PULL-DOC-REPLY"), 10)).msgtype
        finally:
            await client.close()

    assert asyncio.run(pull()) == "PULL-DOC-REPLY"
    assert "'echo' at http://localhost:" in prefixed.log and "/bokeh/echo" in prefixed.log

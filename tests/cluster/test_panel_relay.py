"""A Panel app across processes: its page from one process, its WebSocket through another.

Panel writes some of its messages straight to the connection's socket (not through the
document's change events): those must travel over the relay too. Two runbokeh processes of
their own share the package's Redis; the app is tests/panel/apps/bind.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("panel")

from bokeh.document.events import MessageSentEvent
from bokeh.events import DocumentReady
from bokeh.models import TextInput

from tests.bokeh_client import PROTOCOL
from tests.cluster.conftest import server_env, start_servers
from tests.cluster.helpers import TIMEOUT, HookLog, close_all, connect, describe, load_page, relayed
from tests.live import LiveServer

pytestmark = pytest.mark.redis

APP = "bind"
APP_PATH = str(Path(__file__).resolve().parents[1] / "panel" / "apps" / "bind.py")


@pytest.fixture(scope="module")
def pair(redis, static_root, tmp_path_factory) -> Iterator[list[LiveServer]]:
    hook_log = HookLog(tmp_path_factory.mktemp("panel-relay") / "hooks.log")
    servers = start_servers(2, server_env(redis, hook_log, static_root), APP_PATH)
    yield servers
    for server in servers:
        server.stop()


def greeting(doc) -> str:
    return " ".join(getattr(m, "text", "") or "" for m in doc.models if type(m).__name__ == "HTML")


def test_panel_app_page_on_one_process_websocket_through_the_other(pair: list[LiveServer]) -> None:
    a, b = pair

    async def scenario() -> str:
        token, session_id = await load_page(a.url, APP)
        peer = await connect(b.url, token, app=APP)
        try:
            doc = await peer.pull()
            assert "Hello, world!" in greeting(doc), greeting(doc)
            # As BokehJS does once it has rendered: Panel holds its updates until then.
            ready = PROTOCOL.create("PATCH-DOC", [MessageSentEvent(doc, "bokeh_event", DocumentReady())])
            await peer.send(ready)
            ok, before = await peer.recv_until("OK")
            assert ok.header["reqid"] == ready.header["msgid"]
            peer.apply(before)
            [name] = [m for m in doc.models if isinstance(m, TextInput)]
            await peer.send_patch(lambda d: setattr(d.get_model_by_id(name.id), "value", "Django"))
            await peer.wait_until(
                lambda d: "Hello, Django!" in greeting(d), TIMEOUT,
                lambda d: f"the greeting stayed {greeting(d)!r}\n{describe(a, b)}",
            )
            return session_id
        finally:
            await close_all([peer])

    session_id = asyncio.run(asyncio.wait_for(scenario(), TIMEOUT * 3))
    assert relayed(b, session_id, APP), describe(a, b)
    for server in pair:
        assert "Traceback" not in server.log, describe(server)

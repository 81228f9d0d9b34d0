"""Many sessions at once on a real server: each gets its own, complete document."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from bokeh.document import Document
from bokeh.util.token import get_session_id

from tests.bokeh_client import PROTOCOL, RawBokehClient


def fetch_token(url: str) -> str:
    html = urllib.request.urlopen(url, timeout=30).read().decode()
    return re.search(r'"token":"([^"]+)"', html).group(1)


async def pull(ws_url: str, token: str) -> Document:
    client = await RawBokehClient.connect(ws_url, token, open_timeout=20)
    try:
        assert (await asyncio.wait_for(client.recv(), 20)).msgtype == "ACK"
        await client.send(PROTOCOL.create("PULL-DOC-REQ"))
        reply = await asyncio.wait_for(client.recv_type("PULL-DOC-REPLY"), 20)
        document = Document()
        reply.push_to_document(document)
        return document
    finally:
        await client.close()


def test_concurrent_page_loads_each_get_a_whole_document(server) -> None:
    # App code runs off the event loop; concurrent opens must not mix up curdoc().
    log_start = len(server.log)  # the server is shared with other modules: this test's part of its log
    with ThreadPoolExecutor(max_workers=12) as pool:
        tokens = list(pool.map(fetch_token, [server.url + "/figure_app"] * 12))
    assert len(set(tokens)) == 12

    async def pull_all() -> list[Document]:
        return await asyncio.gather(*(pull(server.url.replace("http", "ws") + "/figure_app/ws", t) for t in tokens))

    documents = asyncio.run(pull_all())
    # Each pulled document is the one its own token's session built (tests/apps/figure_app.py
    # writes curdoc().session_context.id into the "session" Div), and each is whole.
    session_ids = [get_session_id(token) for token in tokens]
    assert len(set(session_ids)) == 12
    seen = [document.get_model_by_name("session").text for document in documents]
    assert seen == session_ids, "a session got another session's document"
    for document in documents:
        assert len(document.roots) == 1
        assert document.get_model_by_name("text_input") is not None
        plot = document.get_model_by_name("plot")
        assert plot is not None and len(plot.renderers) == 2
    # No model object is shared between two sessions' documents.
    model_ids = [{model.id for model in document.models} for document in documents]
    assert sum(map(len, model_ids)) == len(set().union(*model_ids))
    assert "replaced the output document" not in server.log[log_start:]
    assert "Traceback" not in server.log[log_start:]


def test_empty_numpy_columns_arrive_as_zero_byte_buffers(server) -> None:
    token = fetch_token(server.url + "/empty_columns")
    document = asyncio.run(pull(server.url.replace("http", "ws") + "/empty_columns/ws", token))
    source = document.get_model_by_name("source")
    assert {k: len(v) for k, v in source.data.items()} == {"x": 0, "y": 0, "z": 0}
    assert document.get_model_by_name("marker").text == "ready"

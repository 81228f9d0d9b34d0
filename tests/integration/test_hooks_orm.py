"""Hooks use the Django ORM through a real runbokeh process: every hook and process_request, sync and async.

The apps (tests/apps/orm_hooks, orm_hooks_async) write a ``Group`` row from each hook; the
test reads the rows back from the SQLite file the server used. Before hooks ran in the
app-code pool, every sync one raised SynchronousOnlyOperation on the event loop (logged,
nothing written) and the page of an app whose process_request used the ORM was a 500.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
import urllib.request
from pathlib import Path

import pytest
from bokeh.document import Document
from bokeh.util.token import get_session_id, get_token_payload

from tests.bokeh_client import RawBokehClient
from tests.integration.hooks_db import SETTINGS, env_for
from tests.live import LiveServer

TOKEN_RE = re.compile(r'"token":\s*"([^"]+)"')


def groups(database: Path, app: str) -> set[str]:
    """The "<hook> <session id>" marks the app's hooks wrote."""
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT name FROM auth_group WHERE name LIKE ?", (f"{app} %",)).fetchall()
    return {name.removeprefix(f"{app} ") for (name,) in rows}


def wait_for_marks(database: Path, app: str, wanted: set[str], timeout: float = 15) -> set[str]:
    deadline = time.monotonic() + timeout
    while True:
        seen = groups(database, app)
        if wanted <= seen or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def open_page(server: LiveServer, path: str) -> str:
    with urllib.request.urlopen(server.url + path, timeout=30) as response:
        assert response.status == 200
        return TOKEN_RE.search(response.read().decode()).group(1)


async def pull(server: LiveServer, app: str, token: str) -> Document:
    client = await RawBokehClient.connect(server.url.replace("http://", "ws://") + f"/{app}/ws", token)
    try:
        await client.recv_type("ACK")
        from tests.bokeh_client import PROTOCOL

        await client.send(PROTOCOL.create("PULL-DOC-REQ"))
        reply = await client.recv_type("PULL-DOC-REPLY")
        document = Document()
        reply.push_to_document(document)
        return document
    finally:
        await client.close()


@pytest.mark.parametrize("app", ["orm_hooks", "orm_hooks_async"])
def test_every_hook_and_process_request_uses_the_orm(hooks_db: Path, app: str) -> None:
    server = LiveServer(settings=SETTINGS, env=env_for(hooks_db))
    try:
        assert wait_for_marks(hooks_db, app, {"on_server_loaded -"}) >= {"on_server_loaded -"}, server.log
        token = open_page(server, f"/{app}?tag=t1")
        session_id = get_session_id(token)
        # process_request read the user table (one user) and its answer is in the token...
        assert get_token_payload(token)["users_seen"] == 1
        # ...which the session's app code sees in session_context.token_payload.
        document = asyncio.run(pull(server, app, token))
        assert document.get_model_by_name("payload").text == "users_seen=1"
        assert {"process_request t1", f"on_session_created {session_id}"} <= groups(hooks_db, app), server.log
        assert f"on_session_destroyed {session_id}" not in groups(hooks_db, app)
    finally:
        # SIGTERM: the live session is destroyed (its hook and the document's callback run),
        # then on_server_unloaded: all still where the ORM works.
        code = server.stop()
    assert code == 0, server.log
    seen = groups(hooks_db, app)
    assert {f"on_session_destroyed {session_id}", f"document_on_session_destroyed {session_id}",
            "on_server_unloaded -"} <= seen, (seen, server.log)
    assert "SynchronousOnlyOperation" not in server.log
    assert "Error in" not in server.log, server.log


def test_the_guides_request_handler_feeds_the_token_payload(hooks_db: Path) -> None:
    """The user guide's layout: process_request in request_handler.py, lifecycle hooks in app_hooks.py."""
    server = LiveServer(settings=SETTINGS, env=env_for(hooks_db))
    try:
        token = open_page(server, "/guide_layout")
        assert get_token_payload(token)["handled_by"] == "request_handler.py"
        document = asyncio.run(pull(server, "guide_layout", token))
        assert document.get_model_by_name("payload").text == "request_handler.py /guide_layout"
    finally:
        server.stop()

"""Hooks use the Django ORM through a real runbokeh process: every hook and process_request, sync and async.

The apps (tests/apps/orm_hooks, orm_hooks_async) write a ``Group`` row from each hook; the
tests read the rows back from the SQLite file the server used (one server for the module). Before hooks ran in the
app-code pool, every sync one raised SynchronousOnlyOperation on the event loop (logged,
nothing written) and the page of an app whose process_request used the ORM was a 500.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3
import time
import urllib.request
from dataclasses import dataclass, field
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


ORM_APPS = ("orm_hooks", "orm_hooks_async")


@dataclass
class AppVisit:
    """One page of an app and its session's document, and the app's marks before and after the stop."""

    token: str
    payload_text: str
    marks_while_live: set[str]
    marks_after_stop: set[str] = field(default_factory=set)


@dataclass
class Run:
    """What one server of tests.hooks_settings did: a visit per app, its exit code and log."""

    loaded: dict[str, set[str]]
    visits: dict[str, AppVisit]
    exit_code: int | None
    log: str


@pytest.fixture(scope="module")
def run(migrated_hooks_db: Path, tmp_path_factory) -> Run:
    """One server for every app of this module (a start and a stop cost seconds each): each app's
    page opened and its session pulled, then the server stopped with SIGTERM and every app's marks
    read back. The tests below each check one app's part of this record."""
    database = tmp_path_factory.mktemp("hooks-orm") / "hooks.sqlite3"
    shutil.copyfile(migrated_hooks_db, database)
    server = LiveServer(settings=SETTINGS, env=env_for(database))
    visits: dict[str, AppVisit] = {}
    try:
        loaded = {app: wait_for_marks(database, app, {"on_server_loaded -"}) for app in ORM_APPS}
        for app, path in [(app, f"/{app}?tag=t1") for app in ORM_APPS] + [("guide_layout", "/guide_layout")]:
            token = open_page(server, path)
            document = asyncio.run(pull(server, app, token))
            visits[app] = AppVisit(token, document.get_model_by_name("payload").text, groups(database, app))
    finally:
        # SIGTERM: the live sessions are destroyed (their hooks and the documents' callbacks
        # run), then on_server_unloaded: all still where the ORM works.
        code = server.stop()
    for app, visit in visits.items():
        visit.marks_after_stop = groups(database, app)
    return Run(loaded, visits, code, server.log)


@pytest.mark.parametrize("app", ORM_APPS)
def test_every_hook_and_process_request_uses_the_orm(run: Run, app: str) -> None:
    assert "on_server_loaded -" in run.loaded[app], run.log
    visit = run.visits[app]
    session_id = get_session_id(visit.token)
    # process_request read the user table (one user) and its answer is in the token...
    assert get_token_payload(visit.token)["users_seen"] == 1
    # ...which the session's app code sees in session_context.token_payload.
    assert visit.payload_text == "users_seen=1"
    assert {"process_request t1", f"on_session_created {session_id}"} <= visit.marks_while_live, run.log
    assert f"on_session_destroyed {session_id}" not in visit.marks_while_live
    assert run.exit_code == 0, run.log
    assert {f"on_session_destroyed {session_id}", f"document_on_session_destroyed {session_id}",
            "on_server_unloaded -"} <= visit.marks_after_stop, (visit.marks_after_stop, run.log)
    assert "SynchronousOnlyOperation" not in run.log
    assert "Error in" not in run.log, run.log


def test_the_guides_request_handler_feeds_the_token_payload(run: Run) -> None:
    """The user guide's layout: process_request in request_handler.py, lifecycle hooks in app_hooks.py."""
    visit = run.visits["guide_layout"]
    assert get_token_payload(visit.token)["handled_by"] == "request_handler.py"
    assert visit.payload_text == "request_handler.py /guide_layout"

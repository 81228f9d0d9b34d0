"""run_in_thread through a real runbokeh process (tests/apps/threaded_changes.py).

The done-when of issue 10 item 5: a run_in_thread callback whose change triggers another
callback that adds a timeout callback; the triggered callbacks run on the event loop with
curdoc() the session's document, and the client sees the final state. Plus: two sessions
at once do not see each other's documents, and an exception in the function is logged
with the app and the traceback while the session carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import websockets
from bokeh.document import Document
from bokeh.util.token import get_session_id

from tests.bokeh_client import PROTOCOL, RawBokehClient, make_token
from tests.live import LiveServer

APP = Path(__file__).resolve().parent.parent / "apps" / "threaded_changes.py"
#: Seconds to wait for a connection or for the document to reach a state.
TIMEOUT = 20

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server():
    live = LiveServer(str(APP))
    try:
        yield live
    finally:
        live.stop()


class Session(RawBokehClient):
    """One session of threaded_changes: a local copy of its document, kept up to date from PATCH-DOCs."""

    doc: Document
    session_id: str

    @classmethod
    async def open(cls, server: LiveServer) -> Session:
        token = make_token()
        ws = await websockets.connect(
            server.url.replace("http://", "ws://") + "/threaded_changes/ws",
            subprotocols=["bokeh", token], max_size=None, open_timeout=TIMEOUT, close_timeout=5,
        )
        session = cls(ws)
        async with asyncio.timeout(TIMEOUT):
            assert (await session.recv()).msgtype == "ACK"
            await session.send(PROTOCOL.create("PULL-DOC-REQ"))
            reply = await session.recv_type("PULL-DOC-REPLY")
        session.doc = Document()
        reply.push_to_document(session.doc)
        session.session_id = get_session_id(token)
        return session

    def text(self, name: str) -> str:
        return self.doc.get_model_by_name(name).text

    async def set_trigger(self, value: str) -> None:
        events: list[Any] = []
        self.doc.on_change(events.append)
        try:
            self.doc.get_model_by_name("trigger").value = value
        finally:
            self.doc.remove_on_change(events.append)
        await self.send(PROTOCOL.create("PATCH-DOC", events))

    async def wait_until(self, predicate: Callable[[], bool], seconds: float = TIMEOUT) -> None:
        """Apply the server's patches until ``predicate()`` holds."""
        async with asyncio.timeout(seconds):
            while not predicate():
                message = await self.recv()
                if message.msgtype == "PATCH-DOC":
                    message.apply_to_document(self.doc, self)

    async def wait_for(self, name: str, prefix: str, seconds: float = TIMEOUT) -> str:
        """Apply the server's patches until model ``name``'s text starts with ``prefix``; that text."""
        await self.wait_until(lambda: self.text(name).startswith(prefix), seconds)
        return self.text(name)


def where(text: str) -> dict[str, Any]:
    """The app's where() record: thread | on the loop | curdoc() is the session's document | session id."""
    thread, on_loop, is_session_doc, session_id = text.split("|")
    return {"thread": thread, "on_loop": on_loop == "True", "curdoc_is_session_doc": is_session_doc == "True",
            "session_id": session_id}


def on_the_loop(session: Session) -> dict[str, Any]:
    """The record of a callback that ran on the loop (daphne's main thread) for ``session``."""
    return {"thread": "MainThread", "on_loop": True, "curdoc_is_session_doc": True, "session_id": session.session_id}


async def run_chain(session: Session, value: str) -> None:
    """Set trigger to ``value`` and check every step of the chain (see the app's docstring)."""
    await session.set_trigger(value)
    final = await session.wait_for("final", f"done {value}|")
    from_worker = await session.wait_for("worker_timeout", f"{value}|")
    assert session.text("computed") == f"computed {value}"
    worker = where(session.text("worker"))
    # The function itself ran in a worker thread, with curdoc() the session's document.
    assert worker["thread"].startswith("bokeh-callback"), worker
    assert worker == {**worker, "on_loop": False, "curdoc_is_session_doc": True, "session_id": session.session_id}
    # The callback its change triggered, the timeout callback that one added, and the one
    # the function added itself, all ran on the loop thread with the session's curdoc().
    assert where(session.text("reaction")) == on_the_loop(session)
    assert where(final.removeprefix(f"done {value}|")) == on_the_loop(session)
    assert where(from_worker.removeprefix(f"{value}|")) == on_the_loop(session)


async def test_a_change_in_run_in_thread_triggers_callbacks_on_the_loop(server) -> None:
    session = await Session.open(server)
    try:
        await run_chain(session, "first")
        # And again on the same session: nothing was left behind by the first run.
        await run_chain(session, "second")
    finally:
        await session.close()


async def test_two_sessions_at_once_see_only_their_own_documents(server) -> None:
    sessions = await asyncio.gather(Session.open(server), Session.open(server))
    try:
        assert sessions[0].session_id != sessions[1].session_id
        # Each function sleeps in its worker; both chains are under way at the same time.
        await asyncio.gather(run_chain(sessions[0], "left"), run_chain(sessions[1], "right"))
    finally:
        for session in sessions:
            await session.close()


async def test_an_exception_in_the_function_is_logged_and_the_session_carries_on(server) -> None:
    session = await Session.open(server)
    try:
        await session.set_trigger("raise")
        # The function set worker.text before raising; its patch goes out after the error is logged.
        await session.wait_for("worker", "bokeh-callback")
        log = server.log
        assert f"run_in_thread callback compute of app 'threaded_changes' (session {session.session_id!r}) failed" in log
        assert "Traceback (most recent call last)" in log
        assert "RuntimeError: threaded_changes was asked to fail ('raise')" in log
        # The same connection and session keep working, with curdoc() still right in the worker.
        await run_chain(session, "after")
    finally:
        await session.close()


async def test_a_stream_from_the_worker_fires_on_change_on_the_loop(server) -> None:
    session = await Session.open(server)
    try:
        await session.set_trigger("stream")
        text = await session.wait_for("streamed", "3 rows|")
        assert where(text.removeprefix("3 rows|")) == on_the_loop(session)
        # The rows follow: the stream's own patch goes out after those of the callbacks it fired, as in bokeh.
        source = session.doc.get_model_by_name("source")
        await session.wait_until(lambda: list(source.data["x"]) == [1, 2, 3])
    finally:
        await session.close()


async def test_a_periodic_callback_added_in_the_worker_runs_on_the_loop_and_can_be_removed(server) -> None:
    session = await Session.open(server)
    try:
        await session.set_trigger("periodic")
        text = await session.wait_for("ticks", "3|")
        assert where(text.removeprefix("3|")) == on_the_loop(session)
        # Removed at the third tick: a 20 ms callback still running would tick again well within this.
        with contextlib.suppress(TimeoutError):
            await session.wait_for("ticks", "4|", seconds=0.5)
        assert session.text("ticks").startswith("3|")
    finally:
        await session.close()


async def test_a_run_in_thread_callback_triggered_from_one_runs_after_it(server) -> None:
    session = await Session.open(server)
    try:
        await session.set_trigger("nested")
        text = await session.wait_for("nested", "after compute: ")
        ran_after, record = text.removeprefix("after compute: ").split("|", 1)
        assert ran_after == "True"
        inner = where(record)
        assert inner["thread"].startswith("bokeh-callback") and inner["curdoc_is_session_doc"], inner
    finally:
        await session.close()


async def test_an_exception_in_a_triggered_callback_reaches_the_function_and_is_logged(server) -> None:
    session = await Session.open(server)
    try:
        await session.set_trigger("bad-reaction")
        await session.wait_for("worker", "bokeh-callback")
        log = server.log
        assert f"run_in_thread callback compute of app 'threaded_changes' (session {session.session_id!r}) failed" in log
        assert "ValueError: react refuses 'bad-reaction'" in log
        await run_chain(session, "recovered")
    finally:
        await session.close()


async def test_run_in_thread_called_from_an_unlocked_callback_runs_under_the_lock(server) -> None:
    session = await Session.open(server)
    try:
        await session.set_trigger("unlocked")
        text = await session.wait_for("unlocked", "from unlocked|")
        record = where(text.removeprefix("from unlocked|"))
        assert record["thread"].startswith("bokeh-callback") and record["curdoc_is_session_doc"], record
    finally:
        await session.close()

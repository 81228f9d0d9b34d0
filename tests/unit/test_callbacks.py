"""run_in_thread's hand-over: what a worker's document changes set off runs on the loop thread.

No server here: a plain Document and this test's event loop (tests/integration/test_run_in_thread.py
checks the same through runbokeh, with sessions, the document lock and a client).
"""

from __future__ import annotations

import asyncio
import threading
import weakref

import pytest
from bokeh.document import Document
from bokeh.io import curdoc
from bokeh.models import Div

from bokehserve_django import callbacks
from bokehserve_django.callbacks import run_in_thread


def document_with_div() -> tuple[Document, Div]:
    doc = Document()
    div = Div(text="")
    doc.add_root(div)
    return doc, div


async def run_worker(doc: Document, func) -> None:
    """What run_in_thread's next-tick callback does, minus the session: func in a worker thread."""
    loop = asyncio.get_running_loop()
    callbacks._dispatch_worker_changes_on_loop(doc)
    await loop.run_in_executor(None, callbacks._run_in_worker, loop, doc, func, (), {})


async def test_what_a_worker_change_sets_off_runs_on_the_loop_thread() -> None:
    doc, div = document_with_div()
    seen: list[tuple[str, bool, str]] = []
    div.on_change("text", lambda attr, old, new: seen.append(("model", threading.current_thread() is threading.main_thread(), new)))
    doc.on_change(lambda event: seen.append(("document", threading.current_thread() is threading.main_thread(), type(event).__name__)))
    in_worker: list[tuple[bool, bool]] = []

    def func() -> None:
        in_worker.append((threading.current_thread() is threading.main_thread(), curdoc() is doc))
        div.text = "changed"
        # The assignment returned after the callbacks ran (on the loop).
        in_worker.append((len(seen) == 2, div.text == "changed"))

    await run_worker(doc, func)
    assert in_worker == [(False, True), (True, True)]
    assert seen == [("model", True, "changed"), ("document", True, "ModelChangedEvent")]


async def test_an_exception_in_a_triggered_callback_is_raised_at_the_assignment() -> None:
    doc, div = document_with_div()

    def refuse(attr, old, new):
        raise ValueError(f"no {new!r}")

    div.on_change("text", refuse)

    def func() -> None:
        div.text = "bad"

    with pytest.raises(ValueError, match="no 'bad'"):
        await run_worker(doc, func)


async def test_curdoc_in_the_worker_is_restored_after_a_failure() -> None:
    import bokeh.io.doc as bokeh_io_doc

    doc, _ = document_with_div()
    depths: list[int] = []

    def fail() -> None:
        depths.append(len(bokeh_io_doc._PATCHED_CURDOCS))
        raise RuntimeError("boom")

    def check() -> None:
        depths.append(len(bokeh_io_doc._PATCHED_CURDOCS))

    loop = asyncio.get_running_loop()
    executor = callbacks.callback_executor()
    with pytest.raises(RuntimeError):
        await loop.run_in_executor(executor, callbacks._run_in_worker, loop, doc, fail, (), {})
    # Every worker thread of the pool: its curdoc() stack holds only the running function's document.
    for _ in range(8):
        await loop.run_in_executor(executor, callbacks._run_in_worker, loop, doc, check, (), {})
    assert set(depths) == {1}


def test_a_worker_waiting_on_a_stopped_loop_gets_an_error(monkeypatch) -> None:
    monkeypatch.setattr(callbacks, "_LOOP_CHECK_INTERVAL", 0.05)
    doc, _ = document_with_div()
    loop = asyncio.new_event_loop()  # never run
    try:
        with pytest.raises(RuntimeError, match="event loop stopped"):
            callbacks._call_on_loop(loop, weakref.ref(doc), lambda: None, (), {})
    finally:
        loop.close()


def test_async_functions_are_refused_with_what_to_do_instead() -> None:
    async def refresh(attr, old, new) -> None:
        pass

    with pytest.raises(TypeError, match=r"refresh is async.*sync_to_async"):
        run_in_thread(refresh)


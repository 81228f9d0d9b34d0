"""Serves the guide's "Unlocked callbacks" demo: blocking work off the event loop, result applied under the lock.

A Button click (a normal, locked callback) schedules an unlocked coroutine. That coroutine
waits for a blocking function on a ThreadPoolExecutor without holding the document lock,
then hands the result back with ``doc.add_next_tick_callback`` so it is applied under the
lock. A fast locked periodic "heartbeat" keeps ticking while the job runs, which is what
the unlocked callback buys. Plain Bokeh app (``bokeh serve unlocked.py``); see README.md.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import count
from typing import TYPE_CHECKING

from bokeh.document import without_document_lock
from bokeh.events import ButtonClick
from bokeh.layouts import column
from bokeh.models import Button, Div
from bokeh.plotting import curdoc

if TYPE_CHECKING:
    from bokeh.application.application import SessionContext

BLOCKING_SECONDS = 1.0  # how long each job blocks its worker thread
HEARTBEAT_MS = 100  # period of the locked heartbeat callback

doc = curdoc()  # saved: inside an unlocked callback curdoc() is a restricted proxy
doc.title = "Unlocked callback demo"

# One small pool per session (this module runs once per session); shut down with the session.
executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="unlocked-demo")
job_numbers = count(1)
heartbeats = count(1)

button = Button(label="Run blocking job", button_type="primary", name="button")
status = Div(text="status: idle", name="status")
result = Div(text="result: none", name="result")
heartbeat = Div(text="heartbeat: 0", name="heartbeat")


def blocking_task(job: int) -> int:
    """Stand in for slow, blocking work (I/O, a C extension, ...); deterministic so tests can check it."""
    time.sleep(BLOCKING_SECONDS)
    return job * job


async def locked_update(job: int, value: int) -> None:
    """Apply a finished job's result; a next tick callback, so it holds the document lock."""
    result.text = f"result: job {job} -> {value}"
    status.text = f"status: job {job} done"


async def run_job(job: int) -> None:
    """Wait for the blocking task without the lock, then schedule the locked update."""
    session_doc = doc  # a local survives the session's teardown; module globals don't (see below)
    value = await asyncio.wrap_future(executor.submit(blocking_task, job))
    if session_doc.session_context is None:
        # The session was destroyed while we waited, and Bokeh has cleared this module's
        # globals (bokeh/bokeh#14538): nobody is left to show the result, so stop here.
        return
    # Touching models here would be unsafe; only next-tick callbacks may be added without the lock.
    doc.add_next_tick_callback(partial(locked_update, job=job, value=value))


def on_click(event: ButtonClick) -> None:
    """Start one job per click (locked: may change models), then hand off to an unlocked callback."""
    job = next(job_numbers)
    status.text = f"status: job {job} running"
    # Bokeh reads the ``nolock`` mark from the callable it is given, and partial() would hide
    # the mark of a decorated function, so bind the argument first and mark the partial.
    doc.add_next_tick_callback(without_document_lock(partial(run_job, job)))


def on_heartbeat() -> None:
    """Tick while jobs run: proves the unlocked job is not holding the document lock."""
    heartbeat.text = f"heartbeat: {next(heartbeats)}"


def on_session_destroyed(session_context: SessionContext, executor: ThreadPoolExecutor = executor) -> None:
    """Release this session's worker threads; queued jobs are dropped with the session.

    ``executor`` is bound as a default argument because Bokeh clears this module's globals
    *before* it runs on_session_destroyed callbacks (bokeh/bokeh#14538).
    """
    executor.shutdown(wait=False, cancel_futures=True)


button.on_event(ButtonClick, on_click)
doc.add_periodic_callback(on_heartbeat, HEARTBEAT_MS)
doc.on_session_destroyed(on_session_destroyed)
doc.add_root(column(button, status, result, heartbeat, name="layout"))

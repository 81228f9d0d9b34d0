"""Serves the guide's "Updating from threads" demo: a per-session thread feeding the document.

The thread never touches models itself; it hands each value to the event loop with
``doc.add_next_tick_callback(partial(...))``, the only thread-safe Document call. A periodic
callback runs alongside. The thread ends when the session is destroyed, so tests don't leak
threads. Plain Bokeh app (``bokeh serve thread.py`` works unchanged); see README.md.

If the environment variable BOKEHSERVE_DEMO_HOOK_LOG names a file, one line
"<event> <pid> <session id>" is appended when the thread starts and when it stops.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from functools import partial
from itertools import count
from typing import TYPE_CHECKING

from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, Div, Toggle
from bokeh.plotting import curdoc, figure

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from bokeh.application.application import SessionContext
    from bokeh.document import Document

log = logging.getLogger("demo_project.bokeh_apps.thread")

TICK_SECONDS = 0.2  # pause between two values from the thread
PERIODIC_MS = 500  # period of the locked periodic callback
ROLLOVER = 1000  # the source keeps at most this many points (200 s of ticks)


def start_producer(doc: Document, update: Callable[..., Coroutine[None, None, None]]) -> threading.Event:
    """Start this session's worker thread; return the Event that pauses it while set.

    Everything the thread and its stop callback use is bound to a local here, never looked
    up as a module global: when Bokeh destroys a session it clears this module's namespace
    *before* it runs ``doc.on_session_destroyed`` callbacks (bokeh/bokeh#14538), and the
    thread may still be mid-tick then.
    """
    session_id = doc.session_context.id if doc.session_context else "-"
    stop, paused = threading.Event(), threading.Event()
    add_next_tick, bind, sin, logger = doc.add_next_tick_callback, partial, math.sin, log
    hook_log, pid, tick_seconds = os.environ.get("BOKEHSERVE_DEMO_HOOK_LOG"), os.getpid(), TICK_SECONDS

    def record(event: str) -> None:
        """Append one line for cross-process test counting, only when a test asked for it."""
        if hook_log:
            with open(hook_log, "a", encoding="utf8") as f:
                f.write(f"{event} {pid} {session_id}\n")

    def produce() -> None:
        """Make one deterministic value per tick until the session is destroyed."""
        record("thread_started")
        tick = 0
        # Event.wait doubles as the sleep, so a stop request ends the loop without waiting a tick.
        while not stop.wait(tick_seconds):
            if paused.is_set():
                continue
            tick += 1
            try:
                add_next_tick(bind(update, tick=tick, y=sin(tick / 5)))
            except (RuntimeError, AttributeError):
                # The document is destroyed before on_session_destroyed runs, so an add can
                # race with teardown. The session is gone either way: stop.
                break
        logger.info("worker thread for session %s stopped after %d ticks", session_id, tick)
        record("thread_stopped")

    def on_session_destroyed(session_context: SessionContext) -> None:
        stop.set()

    doc.on_session_destroyed(on_session_destroyed)
    # daemon=True: a server shutting down without destroying sessions must not hang on this thread.
    threading.Thread(target=produce, name=f"thread-demo-{session_id}", daemon=True).start()
    return paused


doc = curdoc()  # saved so the worker thread talks to this session's document, not whatever curdoc() is then
doc.title = "Thread demo"

source = ColumnDataSource(data={"x": [], "y": []}, name="thread_source")
plot = figure(height=250, width=500, toolbar_location=None, name="plot")
plot.line(x="x", y="y", source=source)
plot.scatter(x="x", y="y", source=source, size=4)

thread_count = Div(text="thread ticks: 0", name="thread_count")
periodic_count = Div(text="periodic ticks: 0", name="periodic_count")
pause = Toggle(label="Pause thread", active=False, name="pause")
status = Div(text="status: running", name="status")
periodic_ticks = count(1)


async def update(tick: int, y: float) -> None:
    """Apply one value from the thread; runs on the event loop with the document lock held."""
    source.stream({"x": [tick], "y": [y]}, rollover=ROLLOVER)
    thread_count.text = f"thread ticks: {tick}"


def on_periodic() -> None:
    """Count periodic callbacks (locked, on the event loop) next to the thread's updates."""
    periodic_count.text = f"periodic ticks: {next(periodic_ticks)}"


def on_pause(attr: str, old: bool, new: bool) -> None:
    """Pause or resume the thread from the browser; the status text confirms Python saw it."""
    if new:
        paused.set()
    else:
        paused.clear()
    status.text = "status: paused" if new else "status: running"


pause.on_change("active", on_pause)
doc.add_periodic_callback(on_periodic, PERIODIC_MS)  # Bokeh removes it when the session ends
doc.add_root(column(row(pause, status), thread_count, periodic_count, plot, name="layout"))
paused = start_producer(doc, update)

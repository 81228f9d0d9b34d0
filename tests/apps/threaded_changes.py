"""Test app: run_in_thread callbacks whose changes trigger callbacks, which must run on the loop.

Each step writes where it ran (``where()``) into a Div, so a client can check that the
triggered callbacks ran on the event loop with curdoc() the session's document. What
``trigger.value`` asks for:

``<word>``
    compute (run_in_thread, worker): sets worker.text, sleeps, sets computed.text =
    "computed <word>", and adds a timeout callback itself (-> worker_timeout.text);
    react (on_change of computed.text, loop): sets reaction.text, adds a timeout callback;
    finish (that timeout callback, loop): sets final.text = "done <word>|...".
``raise``
    compute raises after setting worker.text.
``stream``
    compute streams 3 rows into ``source``; on_stream (on_change of source.data, loop)
    sets streamed.text.
``periodic``
    compute adds a periodic callback (20 ms); tick (loop) counts in ticks.text and removes
    itself from the third tick on.
``nested``
    compute sets nest.text, whose on_change (loop) calls the run_in_thread function
    inner; inner must run after compute returned (the lock is held until then).
``bad-reaction``
    compute sets computed.text = "computed bad-reaction", whose on_change raises.
``unlocked``
    compute adds a next-tick callback marked without_document_lock, which calls the
    run_in_thread function from_unlocked (curdoc() is bokeh's UnlockedDocumentProxy there).
"""

import asyncio
import threading
import time

from bokeh.document import without_document_lock
from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Div, TextInput

from bokehserve_django.callbacks import run_in_thread

doc = curdoc()
trigger = TextInput(name="trigger", value="")
worker = Div(name="worker", text="")
computed = Div(name="computed", text="")
reaction = Div(name="reaction", text="")
final = Div(name="final", text="")
worker_timeout = Div(name="worker_timeout", text="")
source = ColumnDataSource(name="source", data={"x": []})
streamed = Div(name="streamed", text="")
ticks = Div(name="ticks", text="")
nest = Div(name="nest", text="")
nested = Div(name="nested", text="")
unlocked = Div(name="unlocked", text="")
#: Whether compute is running now (read by inner, which must run after it).
running = {"compute": False}


def where() -> str:
    """thread name | on the event loop | curdoc() is this session's document | session id."""
    try:
        asyncio.get_running_loop()
        on_loop = True
    except RuntimeError:
        on_loop = False
    current = curdoc()
    return f"{threading.current_thread().name}|{on_loop}|{current is doc}|{current.session_context.id}"


@run_in_thread
def compute(attr, old, new):
    running["compute"] = True
    try:
        worker.text = where()
        if new == "raise":
            raise RuntimeError(f"threaded_changes was asked to fail ({new!r})")
        if new == "stream":
            source.stream({"x": [1, 2, 3]})
        elif new == "periodic":
            periodic_callbacks.append(curdoc().add_periodic_callback(tick, 20))
        elif new == "unlocked":
            curdoc().add_next_tick_callback(unlocked_next_tick)
        elif new == "nested":
            nest.text = "asked"
            time.sleep(0.2)  # inner must wait for this
        else:
            time.sleep(0.3)  # blocking work: other sessions keep being served meanwhile
            computed.text = f"computed {new}"
            if new != "bad-reaction":
                def from_worker():
                    worker_timeout.text = f"{new}|{where()}"

                curdoc().add_timeout_callback(from_worker, 20)
    finally:
        running["compute"] = False


def react(attr, old, new):
    if new == "computed bad-reaction":
        raise ValueError("react refuses 'bad-reaction'")
    reaction.text = where()
    value = new.removeprefix("computed ")

    def finish():
        final.text = f"done {value}|{where()}"

    curdoc().add_timeout_callback(finish, 50)


def on_stream(attr, old, new):
    streamed.text = f"{len(new['x'])} rows|{where()}"


counted = {"ticks": 0}
#: The periodic callback compute added (appended in the worker once the add has returned).
periodic_callbacks = []


def tick():
    counted["ticks"] += 1
    ticks.text = f"{counted['ticks']}|{where()}"
    if counted["ticks"] >= 3 and periodic_callbacks:
        curdoc().remove_periodic_callback(periodic_callbacks.pop())


@run_in_thread
def inner():
    nested.text = f"after compute: {not running['compute']}|{where()}"


def on_nest(attr, old, new):
    inner()


@without_document_lock
def unlocked_next_tick():
    from_unlocked()


@run_in_thread
def from_unlocked():
    unlocked.text = f"from unlocked|{where()}"


trigger.on_change("value", compute)
computed.on_change("text", react)
source.on_change("data", on_stream)
nest.on_change("text", on_nest)
doc.add_root(column(trigger, worker, computed, reaction, final, worker_timeout, streamed, ticks, nest, nested, unlocked))
doc.add_root(source)

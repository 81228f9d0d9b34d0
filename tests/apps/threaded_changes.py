"""Test app: a run_in_thread callback whose change triggers a callback that adds a timeout callback.

Each step writes where it ran into a Div, so a client can check that the triggered
callbacks ran on the event loop with curdoc() the session's document:

    trigger.value = v   (from the client)
      -> compute (run_in_thread, worker thread): sleeps, sets computed.text = "computed v"
           -> react (on_change of computed.text, must run on the loop): writes reaction,
              adds a timeout callback
                -> finish (timeout callback, loop): sets final.text = "done v"
         compute also adds a timeout callback itself, from the worker (-> worker_timeout).

``trigger.value = "raise"`` makes compute raise after it changed nothing.
"""

import asyncio
import threading
import time

from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import Div, TextInput

from bokehserve_django.callbacks import run_in_thread

doc = curdoc()
trigger = TextInput(name="trigger", value="")
worker = Div(name="worker", text="")
computed = Div(name="computed", text="")
reaction = Div(name="reaction", text="")
final = Div(name="final", text="")
worker_timeout = Div(name="worker_timeout", text="")


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
    worker.text = where()
    if new == "raise":
        raise RuntimeError(f"threaded_changes was asked to fail ({new!r})")
    time.sleep(0.3)  # blocking work: other sessions keep being served meanwhile
    computed.text = f"computed {new}"

    def from_worker():
        worker_timeout.text = f"{new}|{where()}"

    curdoc().add_timeout_callback(from_worker, 20)


def react(attr, old, new):
    reaction.text = where()
    value = new.removeprefix("computed ")

    def finish():
        final.text = f"done {value}|{where()}"

    curdoc().add_timeout_callback(finish, 50)


trigger.on_change("value", compute)
computed.on_change("text", react)
doc.add_root(column(trigger, worker, computed, reaction, final, worker_timeout))

"""Cluster test app whose Python callback blocks the event loop for 10 s, as a heavy pandas step
does, then writes its result into a model.

Models: TextInput "state" (no callback: state the client sets), TextInput "trigger" (its
on_change sleeps BLOCK_SECONDS on the loop, then sets Div "result"), Div "pid" (the owner).
Each document build is logged as "blocking_created <pid> <session id>" and each stall as
"blocking_stall_start ..." / "blocking_stall_end ..." in $BOKEHSERVE_TEST_HOOK_LOG.
"""

import os
import time

from bokeh.io import curdoc
from bokeh.models import Div, TextInput

BLOCK_SECONDS = 10

doc = curdoc()
context = doc.session_context
session_id = context.id if context is not None else "-"


def record(event):
    path = os.environ.get("BOKEHSERVE_TEST_HOOK_LOG")
    if path:
        with open(path, "a") as log:
            log.write(f"{event} {os.getpid()} {session_id}\n")


record("blocking_created")

state = TextInput(name="state", value="")
trigger = TextInput(name="trigger", value="")
result = Div(name="result", text="")
pid = Div(name="pid", text=str(os.getpid()))


def on_trigger(attr, old, new):
    record("blocking_stall_start")
    started = time.monotonic()
    time.sleep(BLOCK_SECONDS)  # blocks the event loop, like a long synchronous computation
    result.text = f"{new}: done after {time.monotonic() - started:.1f} s in {os.getpid()}"
    record("blocking_stall_end")


trigger.on_change("value", on_trigger)
for root in (state, trigger, result, pid):
    doc.add_root(root)

"""Fault-test app (served only by tests/cluster/test_faults_redis.py, as a runbokeh APP argument):
the echo app's text_input -> output round trip, a "state" TextInput only the client sets (the
state a reconnect must find again), and a Div "pid" naming the process that owns the session.
Each run of this script appends "app_ran <pid> <session id>" to $BOKEHSERVE_TEST_HOOK_LOG."""

import os

from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import Div, TextInput

doc = curdoc()
text_input = TextInput(name="text_input", value="")
output = Div(name="output", text="")
state = TextInput(name="state", value="")
pid = Div(name="pid", text=str(os.getpid()))


def on_text(attr, old, new):
    output.text = new.upper()


text_input.on_change("value", on_text)
doc.add_root(column(text_input, output, state, pid))

_log = os.environ.get("BOKEHSERVE_TEST_HOOK_LOG")
if _log and doc.session_context is not None:
    with open(_log, "a") as log:
        log.write(f"app_ran {os.getpid()} {doc.session_context.id}\n")

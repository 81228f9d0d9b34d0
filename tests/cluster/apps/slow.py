"""Cluster test app whose document takes half a second to build (it widens the window of races
between processes) and that records each build as "slow_created <pid> <session id>" in
$BOKEHSERVE_TEST_HOOK_LOG."""

import os
import time

from bokeh.io import curdoc
from bokeh.models import Div

doc = curdoc()
time.sleep(0.5)
context = doc.session_context
log_path = os.environ.get("BOKEHSERVE_TEST_HOOK_LOG")
if log_path and context is not None:
    with open(log_path, "a") as log:
        log.write(f"slow_created {os.getpid()} {context.id}\n")
doc.add_root(Div(name="pid", text=str(os.getpid())))

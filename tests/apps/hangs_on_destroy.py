"""Test app whose on_session_destroyed blocks the event loop for a minute: a stop that hangs.

tests/integration/test_sigterm.py checks that the process still exits in time (the
server's watchdog), however long this takes.
"""

import time

from bokeh.io import curdoc
from bokeh.models import Div


async def on_destroyed(session_context):
    # async: it runs on the event loop (a sync callback would run in a worker thread), and
    # time.sleep there blocks the loop, as the test needs.
    time.sleep(60)  # noqa: ASYNC251 - blocking the loop is the point


curdoc().add_root(Div(text="hangs on destroy"))
curdoc().on_session_destroyed(on_destroyed)

"""Test app whose on_session_destroyed blocks the event loop for a minute: a stop that hangs.

tests/integration/test_sigterm.py checks that the process still exits in time (the
server's watchdog), however long this takes.
"""

import time

from bokeh.io import curdoc
from bokeh.models import Div


def on_destroyed(session_context):
    time.sleep(60)


curdoc().add_root(Div(text="hangs on destroy"))
curdoc().on_session_destroyed(on_destroyed)

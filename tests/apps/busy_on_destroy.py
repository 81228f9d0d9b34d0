"""Test app whose on_session_destroyed keeps the event loop busy for 1.5 s, as a heavy clean-up would.

That is longer than autobahn's close handshake timeout (1 s, which its batched timer fires
0-1 s after the close frame): at shutdown the drain queues the close frames and then runs
this hook, so the timeout is due before the loop writes anything. The close frame must get
out all the same (tests/integration/test_tls_and_proxy.py).
"""

import time

from bokeh.io import curdoc
from bokeh.models import Div


async def on_destroyed(session_context):
    # async: it runs on the event loop (a sync callback would run in a worker thread), and
    # time.sleep there blocks the loop, as the test needs.
    time.sleep(1.5)  # noqa: ASYNC251 - blocking the loop is the point


curdoc().add_root(Div(text="busy on destroy"))
curdoc().on_session_destroyed(on_destroyed)

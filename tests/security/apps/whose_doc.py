"""Test app: writes its own session id into the document, with a pause between two curdoc() calls.

If app code of two sessions runs at the same time and ``curdoc()`` is shared between them
(bokeh patches it through a process-global stack), the second call returns the other
session's document and this session's Div lands there.
"""

import time

from bokeh.io import curdoc
from bokeh.models import Div

session_id = curdoc().session_context.id
time.sleep(0.2)
curdoc().add_root(Div(name="owner", text=session_id))

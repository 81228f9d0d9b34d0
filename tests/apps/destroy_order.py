"""Records, when its session ends, whether its document was destroyed before the callback ran,
and that the app module's globals were still there (see AppSessions.discard)."""

import os

from bokeh.io import curdoc
from bokeh.models import Div

MARK = "globals-intact"
doc = curdoc()
doc.add_root(Div(text="destroy order"))


def record(session_context):
    with open(os.environ["BOKEHSERVE_TEST_HOOK_LOG"], "a") as log:
        log.write(f"destroyed={session_context.destroyed} roots-gone={not hasattr(doc, '_roots')} {MARK}\n")


doc.on_session_destroyed(record)

"""Test app whose app_hooks record every lifecycle call (see app_hooks.py)."""

import os

from bokeh.io import curdoc
from bokeh.models import Div

doc = curdoc()
ctx = doc.session_context
args = ctx.request.arguments if ctx and ctx.request else {}
payload = ctx.token_payload if ctx else {}
div = Div(name="info", text=f"args={sorted(args)} seen_path={payload.get('seen_path')}")
doc.add_root(div)


def on_document_destroyed(session_context):
    path = os.environ.get("BOKEHSERVE_TEST_HOOK_LOG")
    if path:
        with open(path, "a") as log:
            log.write(f"document_on_session_destroyed {os.getpid()} {session_context.id}\n")


doc.on_session_destroyed(on_document_destroyed)

"""pn.state.on_session_destroyed from app code: writes a line to $BOKEHSERVE_TEST_HOOK_LOG when the session ends."""

import os

import panel as pn


def ended(session_context):
    path = os.environ.get("BOKEHSERVE_TEST_HOOK_LOG")
    if path:
        with open(path, "a") as log:
            log.write(f"panel-destroyed {session_context.id}\n")


pn.state.on_session_destroyed(ended)
pn.pane.Markdown(f"created for {pn.state.curdoc.session_context.id}").servable()

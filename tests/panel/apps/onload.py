"""pn.state.onload: the status pane changes only once the page has loaded in the browser."""

import panel as pn

status = pn.pane.Markdown("status: loading")


def loaded():
    status.object = "status: loaded"


pn.state.onload(loaded)
pn.Column(status).servable()

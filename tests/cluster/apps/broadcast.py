"""Cluster test app: subscribes to the "cluster-test" broadcast topic and appends each payload's
"text" to the Div "events"; the Div "pid" names the process that owns the session."""

import os

from bokeh.io import curdoc
from bokeh.models import Div

from bokehserve_django.broadcast import subscribe

doc = curdoc()
pid = Div(name="pid", text=str(os.getpid()))
events = Div(name="events", text="")


def on_event(payload):
    events.text = f"{events.text}|{payload['text']}" if events.text else payload["text"]


subscribe(doc, "cluster-test", on_event)
doc.add_root(pid)
doc.add_root(events)

"""Test app: shows what ``session_context.request`` says about the connection: scheme and client address."""

from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import Div

doc = curdoc()
request = doc.session_context.request
doc.add_root(column(
    Div(name="protocol", text=str(request.protocol)),
    Div(name="remote_ip", text=str(request.remote_ip)),
))

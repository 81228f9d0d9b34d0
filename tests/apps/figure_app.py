"""Test app that builds a figure (tens of milliseconds of app code per session).

The Div named "session" holds the id of the session that built the document, so a client
can tell that the document it pulled is its own session's.
"""

from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import Div, TextInput
from bokeh.plotting import figure

doc = curdoc()
plot = figure(name="plot", title="figure")
plot.line([1, 2, 3], [3, 1, 2])
plot.scatter([1, 2, 3], [3, 1, 2])
doc.add_root(column(TextInput(name="text_input"), plot, Div(name="session", text=doc.session_context.id)))

"""Benchmark app: a small figure plus a TextInput whose Python callback echoes its value into a Div.

The client changes ``input.value`` with a PATCH-DOC; the server-side ``on_change`` callback sets
``echo.text`` to the same string, which comes back to the client as a PATCH-DOC. The figure is
there so that opening a session costs what a typical app costs (``figure()`` defaults, a glyph,
a data source), not just two widgets.
"""

import numpy as np
from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Div, TextInput
from bokeh.plotting import figure

x = np.linspace(0, 4 * np.pi, 200)
source = ColumnDataSource(data={"x": x, "y": np.sin(x)}, name="curve")

plot = figure(title="bench: widget round trip", width=600, height=300)
plot.line("x", "y", source=source)

text_input = TextInput(name="input", value="", title="value")
echo = Div(name="echo", text="")


def on_value(attr, old, new):
    echo.text = new


text_input.on_change("value", on_value)

curdoc().add_root(column(text_input, echo, plot))
curdoc().title = "bench widget"

"""Test app: a TextInput whose Python on_change callback writes the upper-cased value into a Div,
and a ColumnDataSource whose "x" column the tests replace with large arrays both ways."""

import numpy as np
from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Div, TextInput

text_input = TextInput(name="text_input", value="")
output = Div(name="output", text="")
source = ColumnDataSource(name="source", data={"x": np.zeros(3)})
received = Div(name="received", text="")


def on_text(attr, old, new):
    output.text = new.upper()
    if new == "send-big":
        # Server -> client: 1,000,000 float64 values (8 MB) as one binary buffer.
        source.data = {"x": np.arange(1_000_000, dtype=np.float64)}


def on_data(attr, old, new):
    values = np.asarray(new["x"])
    received.text = f"{len(values)}:{float(values.sum())}"


text_input.on_change("value", on_text)
source.on_change("data", on_data)
curdoc().add_root(column(text_input, output, received))
curdoc().add_root(source)

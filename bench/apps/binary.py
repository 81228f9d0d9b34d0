"""Benchmark app: 8 MB binary updates in both directions.

- Upload and echo: the client replaces ``upload.data`` with ``{"x": <1,000,000 float64>}`` (an
  8 MB binary buffer in a PATCH-DOC); the Python callback copies the array into ``echo.data``,
  so the server sends the 8 MB back in a PATCH-DOC.
- Download: the client writes ``gen:<k>`` into ``ctrl.value``; the server replaces
  ``echo.data`` with ``{"x": np.full(1_000_000, k)}``.

Both sources start with one element, so opening a session stays cheap.
"""

import numpy as np
from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Div, TextInput

N = 1_000_000  # float64 -> 8,000,000 bytes

upload = ColumnDataSource(data={"x": np.zeros(1)}, name="upload")
echo = ColumnDataSource(data={"x": np.zeros(1)}, name="echo")
ctrl = TextInput(name="ctrl", value="")


def on_upload(attr, old, new):
    echo.data = {"x": np.asarray(new["x"])}


def on_ctrl(attr, old, new):
    if new.startswith("gen:"):
        echo.data = {"x": np.full(N, float(new.split(":")[1]))}


upload.on_change("data", on_upload)
ctrl.on_change("value", on_ctrl)

doc = curdoc()
doc.add_root(column(ctrl, Div(text="bench: 8 MB binary updates")))
doc.add_root(upload)
doc.add_root(echo)
doc.title = "bench binary"

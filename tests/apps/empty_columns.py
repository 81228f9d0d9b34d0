"""Test app whose document holds empty numpy columns: 0-byte binary buffers on the wire."""

import numpy as np
from bokeh.io import curdoc
from bokeh.models import ColumnDataSource, Div

curdoc().add_root(ColumnDataSource(name="source", data={"x": np.zeros(0), "y": np.zeros(0), "z": np.zeros(0)}))
curdoc().add_root(Div(name="marker", text="ready"))

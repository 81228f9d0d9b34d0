"""Test app that builds a figure (tens of milliseconds of app code per session)."""

from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import TextInput
from bokeh.plotting import figure

plot = figure(name="plot", title="figure")
plot.line([1, 2, 3], [3, 1, 2])
plot.scatter([1, 2, 3], [3, 1, 2])
curdoc().add_root(column(TextInput(name="text_input"), plot))

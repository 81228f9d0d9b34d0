"""A plain Bokeh app whose one model comes from an extension package (tests/extension_package)."""

from bokeh.io import curdoc
from bokehserve_test_ext import Shout

curdoc().add_root(Shout(text="hello from an extension", name="shout"))

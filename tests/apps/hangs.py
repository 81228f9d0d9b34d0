"""Test app whose code never finishes in any useful time (a query that hangs): the time limit refuses it."""

import os
import time

from bokeh.io import curdoc
from bokeh.models import Div

time.sleep(float(os.environ.get("BOKEHSERVE_TEST_HANG_SECONDS", "3600")))
curdoc().add_root(Div(text="never shown"))

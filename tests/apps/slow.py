"""Test app whose code takes $BOKEHSERVE_TEST_SLOW_SECONDS (default 20 s) per session: a slow report.

Each run appends "started" to $BOKEHSERVE_TEST_SLOW_LOG (if set) when it begins, so a test can
count the runs going at once.
"""

import os
import time

from bokeh.io import curdoc
from bokeh.models import Div

if os.environ.get("BOKEHSERVE_TEST_SLOW_LOG"):
    with open(os.environ["BOKEHSERVE_TEST_SLOW_LOG"], "a") as log:
        log.write("started\n")
time.sleep(float(os.environ.get("BOKEHSERVE_TEST_SLOW_SECONDS", "20")))
curdoc().add_root(Div(text="slow, but done"))

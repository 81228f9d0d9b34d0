"""Benchmark Panel app (run.py --panel): widget.py's round trip, written with Panel.

The client changes the ``input`` TextInput's value with a PATCH-DOC; a ``param.watch``
callback copies it into the ``echo`` TextInput, which comes back as a PATCH-DOC. Panel
widgets put their name in bokeh's ``title`` (client.find_model_id looks there). A Markdown
pane and a Bokeh figure make opening a session cost what a small Panel app costs.
"""

import numpy as np
import panel as pn
from bokeh.plotting import figure

x = np.linspace(0, 4 * np.pi, 200)
plot = figure(title="bench: Panel widget round trip", width=600, height=300)
plot.line(x, np.sin(x))

text_input = pn.widgets.TextInput(name="input", value="")
echo = pn.widgets.TextInput(name="echo", value="", disabled=True)


def on_value(event):
    echo.value = event.new


text_input.param.watch(on_value, "value")

pn.Column("# bench Panel widget", text_input, echo, pn.pane.Bokeh(plot)).servable(title="bench Panel widget")

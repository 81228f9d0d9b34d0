"""Serves the "button and text" demo: a click counter and an upper-casing text round trip.

Plain Bokeh app (``bokeh serve button.py`` works unchanged). Every model a browser test
reads or drives has a unique ``name``; see README.md for the test contract.
"""

from __future__ import annotations

from bokeh.events import ButtonClick
from bokeh.layouts import column
from bokeh.models import Button, ColumnDataSource, Div, TextInput
from bokeh.plotting import curdoc, figure

doc = curdoc()
doc.title = "Button demo"

button = Button(label="Press Me", button_type="primary", name="button")
output = Div(text="clicks: 0", name="output")

# The guide's app writes a number at a random spot per click; we place them on a diagonal
# instead, so a test can predict source contents from the click count.
source = ColumnDataSource(data={"x": [], "y": [], "text": []}, name="clicks_source")
plot = figure(x_range=(0, 11), y_range=(0, 11), height=250, width=400, toolbar_location=None, name="plot")
plot.text(
    x="x",
    y="y",
    text="text",
    source=source,
    text_font_size="20px",
    text_align="center",
    text_baseline="middle",
)

text_input = TextInput(title="Type something:", value="", name="text_input")
upper = Div(text="", render_as_text=True, name="upper")  # user text: never render it as HTML


def on_click(event: ButtonClick) -> None:
    """Count the click in Python, so the browser only sees the count after a server round trip."""
    clicks = len(source.data["x"]) + 1
    # Replace .data in one step (the guide's "best practice"): one PATCH message instead of three.
    source.data = {
        "x": [*source.data["x"], (clicks - 1) % 10 + 1],
        "y": [*source.data["y"], (clicks - 1) % 10 + 1],
        "text": [*source.data["text"], str(clicks)],
    }
    output.text = f"clicks: {clicks}"


def on_text(attr: str, old: str, new: str) -> None:
    """Echo the value upper-cased; the transformation proves Python (not BokehJS) produced it."""
    upper.text = new.upper()


button.on_event(ButtonClick, on_click)
text_input.on_change("value", on_text)

doc.add_root(column(button, output, plot, text_input, upper, name="layout"))

"""Builds the classic sine-wave sliders document, plus what the session learned from its HTTP request.

A directory app using every file the user guide lists: ``__init__.py`` (makes the relative
import below work), ``app_hooks.py``, ``request_handler.py``, ``static/``, ``theme.yaml`` and
``templates/`` (``index.html`` embeds the named roots added here). ``?N=`` sets the number of
points. Plain Bokeh app: ``bokeh serve sliders/`` works unchanged; see ../README.md.
"""

from __future__ import annotations

import numpy as np
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Div, Slider, TextInput
from bokeh.plotting import curdoc, figure

from .helpers import app_url, first_arg, make_data, parse_points

doc = curdoc()
doc.title = "Sliders demo"

# --- What the HTTP request told us -------------------------------------------------------------
# session_context is None outside a server (e.g. `bokeh json`); fall back to the defaults.
context = doc.session_context
request = context.request if context is not None else None
query_n = first_arg(request.arguments if request is not None else None, "N")
points = parse_points(query_n)
payload = context.token_payload if context is not None else {}  # includes process_request()'s dict

# --- Widgets and plot; every model a test touches has a unique name ------------------------------
source = ColumnDataSource(data=make_data(points), name="source")

plot = figure(
    height=400,
    width=450,
    title="my sine wave",
    tools="crosshair,pan,reset,save,wheel_zoom",
    x_range=(0, 4 * np.pi),
    y_range=(-2.5, 2.5),
    name="plot",
)
plot.line("x", "y", source=source, line_width=3, line_alpha=0.6)

title_input = TextInput(title="title", value="my sine wave", name="title_input")
offset = Slider(title="offset", value=0.0, start=-5.0, end=5.0, step=0.1, name="offset")
amplitude = Slider(title="amplitude", value=1.0, start=-5.0, end=5.0, step=0.1, name="amplitude")
phase = Slider(title="phase", value=0.0, start=0.0, end=2 * np.pi, step=0.1, name="phase")
freq = Slider(title="frequency", value=1.0, start=0.1, end=5.1, step=0.1, name="freq")
summary = Div(name="summary")

# render_as_text: these show visitor-controlled URL text, which must not be rendered as HTML.
request_args = Div(
    text=f"query N={query_n if query_n is not None else 'none'}; points={points}",
    render_as_text=True,
    name="request_args",
)
token_info = Div(
    text=f"payload request_path={payload.get('request_path')}; query_n={payload.get('query_n')}",
    render_as_text=True,
    name="token_info",
)


def describe() -> str:
    """Summarise the slider values Python used, so a test can see the callback ran."""
    return f"amplitude={amplitude.value:.2f} offset={offset.value:.2f} phase={phase.value:.2f} freq={freq.value:.2f} points={points}"


def update_title(attr: str, old: str, new: str) -> None:
    plot.title.text = new


def update_data(attr: str, old: float, new: float) -> None:
    """Recompute the whole curve from all four sliders (one PATCH per change)."""
    source.data = make_data(points, amplitude.value, offset.value, phase.value, freq.value)
    summary.text = describe()


summary.text = describe()
title_input.on_change("value", update_title)
for slider in (offset, amplitude, phase, freq):
    slider.on_change("value", update_data)

# --- Template --------------------------------------------------------------------------------------
# templates/index.html places each root by name: {{ embed(roots.controls) }} etc.
doc.add_root(column(title_input, offset, amplitude, phase, freq, summary, name="controls", width=300))
doc.add_root(plot)
doc.add_root(column(request_args, token_info, name="request_info"))
doc.template_variables.update(
    heading="Sine-wave sliders",
    intro="Drag a slider: Python recomputes the curve and sends it back.",
    static_root=f"{app_url(request)}/static",
    points=points,
)

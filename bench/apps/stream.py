"""Benchmark app: the server streams rows to a ColumnDataSource when the client asks for them.

The client writes a command into ``ctrl.value`` (a TextInput) with a PATCH-DOC:

``burst:<tag>:<messages>:<rows>``
    stream ``messages`` messages of ``rows`` rows each, as fast as the server can: every
    ``source.stream()`` runs in its own next-tick callback, so the server gets back to its event
    loop (and flushes the previous message) between two messages.
``rate:<tag>:<hz>:<rows>:<seconds>``
    stream ``rows`` rows ``hz`` times a second for ``seconds`` seconds (a periodic callback).

``<tag>`` only makes each command a new value. Every streamed row carries ``t``, the server's
``time.time()`` when it was streamed, so the client can measure delivery latency; the client
counts rows (not messages) so a server that coalesces patches is measured fairly.
"""

import time

import numpy as np
from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, TextInput
from bokeh.plotting import figure

ROLLOVER = 1000  # keep the document bounded however long the stream runs

doc = curdoc()
source = ColumnDataSource(
    data={"x": np.zeros(0), "y": np.zeros(0), "t": np.zeros(0)},
    name="stream",
)
plot = figure(title="bench: streaming", width=600, height=300)
plot.line("x", "y", source=source)
ctrl = TextInput(name="ctrl", value="")

state = {"next_x": 0}


def stream_rows(rows: int) -> None:
    start = state["next_x"]
    state["next_x"] = start + rows
    x = np.arange(start, start + rows, dtype="float64")
    source.stream({"x": x, "y": np.sin(x), "t": np.full(rows, time.time())}, rollover=ROLLOVER)


def burst(messages: int, rows: int) -> None:
    remaining = [messages]

    def step() -> None:
        stream_rows(rows)
        remaining[0] -= 1
        if remaining[0] > 0:
            doc.add_next_tick_callback(step)

    doc.add_next_tick_callback(step)


def rate(hz: float, rows: int, seconds: float) -> None:
    total = max(1, int(hz * seconds))
    sent = [0]
    handle = {}

    def tick() -> None:
        stream_rows(rows)
        sent[0] += 1
        if sent[0] >= total:
            doc.remove_periodic_callback(handle["cb"])

    handle["cb"] = doc.add_periodic_callback(tick, 1000.0 / hz)


def on_ctrl(attr, old, new):
    parts = new.split(":")
    if parts[0] == "burst":
        burst(int(parts[2]), int(parts[3]))
    elif parts[0] == "rate":
        rate(float(parts[2]), int(parts[3]), float(parts[4]))


ctrl.on_change("value", on_ctrl)

doc.add_root(column(ctrl, plot))
doc.title = "bench stream"

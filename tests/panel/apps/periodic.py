"""A periodic callback that counts ticks into a Markdown pane, and stops after 3 of them."""

import panel as pn

ticks = pn.pane.Markdown("ticks: 0")
state = {"n": 0}


def tick():
    state["n"] += 1
    ticks.object = f"ticks: {state['n']}"
    if state["n"] >= 3:
        callback.stop()


callback = pn.state.add_periodic_callback(tick, period=50)
pn.Column(ticks).servable()

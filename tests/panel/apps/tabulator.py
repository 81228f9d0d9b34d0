"""A Tabulator whose selection is echoed by a Markdown pane."""

import pandas as pd
import panel as pn

# disabled: a click on a cell selects its row instead of editing the cell.
table = pn.widgets.Tabulator(pd.DataFrame({"city": ["Oslo", "Lima", "Pune"], "temp": [3, 19, 31]}), disabled=True)
picked = pn.pane.Markdown("picked: none")


def show(event):
    rows = table.value.iloc[event.new]["city"].tolist()
    picked.object = "picked: " + ", ".join(rows)


table.param.watch(show, "selection")
pn.Column(table, picked).servable()

"""Readings from the Django database, updated live when a new one is saved anywhere.

App code may use the ORM directly (it runs in a worker thread); new rows arrive through
bokehserve_django.broadcast: the demo's post_save signal sends each new Reading to the
live sessions of this app, in every server process.
"""

from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Div
from bokeh.plotting import figure

from bokehserve_django.broadcast import subscribe
from demo_project.demo.models import Reading

rows = list(Reading.objects.order_by("-created_at").values_list("id", "created_at", "value")[:200])[::-1]
source = ColumnDataSource(
    name="readings",
    data={
        "id": [r[0] for r in rows],
        "t": [r[1].timestamp() * 1000 for r in rows],
        "value": [r[2] for r in rows],
    },
)
count = Div(name="count", text=f"readings: {len(rows)}")

plot = figure(name="plot", title="Readings (add one in the admin or at /django/readings/)",
              x_axis_type="datetime", height=300, sizing_mode="stretch_width")
plot.line("t", "value", source=source)
plot.scatter("t", "value", source=source, size=7)


def on_reading(payload):
    # Runs as a next-tick callback of this session, under its document lock.
    source.stream({"id": [payload["id"]], "t": [payload["t"]], "value": [payload["value"]]}, rollover=1000)
    count.text = f"readings: {len(source.data['id'])}"


subscribe(curdoc(), "reading", on_reading)
curdoc().add_root(column(count, plot, sizing_mode="stretch_width"))
curdoc().title = "Live readings"

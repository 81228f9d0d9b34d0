"""Builds a small document whose page shows ``curdoc().template_variables`` and the document title.

``templates/index.html`` reads the variables set below and places the two named roots; one
Select -> Python -> Div round trip shows the page is live. Plain Bokeh app:
``bokeh serve template_vars/`` works unchanged; see ../README.md.
"""

from __future__ import annotations

from bokeh.models import Div, Select
from bokeh.plotting import curdoc

COLORS = ["red", "green", "blue"]

doc = curdoc()
doc.title = "Template variables demo"  # the template shows it as {{ title }}

# Rendered once, into the HTML page; later changes are not pushed (they are not document state).
doc.template_variables["greeting"] = "Hello from curdoc().template_variables"
doc.template_variables.update(colors=COLORS, source_file="template_vars/main.py")

select = Select(title="Pick a colour:", value=COLORS[0], options=COLORS, name="select")
# render_as_text: a client can send any value, not just the listed options.
selected = Div(text=f"selected: {COLORS[0]}", render_as_text=True, name="selected")


def on_select(attr: str, old: str, new: str) -> None:
    """Report the choice from Python; the "selected: " text proves the server round trip."""
    selected.text = f"selected: {new}"


select.on_change("value", on_select)

# Two roots, so the template can place each by name: {{ embed(roots.select) }}.
doc.add_root(select)
doc.add_root(selected)

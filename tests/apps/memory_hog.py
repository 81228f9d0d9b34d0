"""Test app whose session holds about 1.5 MB of small Python objects (tests/integration/test_memory.py).

Many small allocations, not one big buffer: a big buffer is its own mapping and goes back to
the system when freed anyway; small ones stay in the allocator's heap unless it is trimmed.
"""

from bokeh.io import curdoc
from bokeh.models import Button

rows = [{"row": i, "label": f"row {i}"} for i in range(8000)]
button = Button(name="button", label=f"{len(rows)} rows")
# The callback keeps the rows alive exactly as long as the session's document.
button.on_click(lambda: setattr(button, "label", f"{len(rows)} rows"))
curdoc().add_root(button)

"""``Shout``: a Div whose view (dist/bokehserve_test_ext.js) shows its text in capitals."""

from bokeh.models import Div


class Shout(Div):
    """Qualified name ``bokehserve_test_ext.shout.Shout``: BokehJS knows it only once the script has loaded."""

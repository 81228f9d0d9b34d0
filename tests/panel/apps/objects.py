"""Panel objects and functions named by import string in BOKEHSERVE["APPS"]."""

import panel as pn


def dashboard():
    """A function returning a Panel object: a fresh one per session."""
    choice = pn.widgets.Select(label="Fruit", options=["apple", "pear"], value="apple")
    return pn.Column(choice, pn.pane.Markdown(pn.bind(lambda f: f"fruit: {f}", choice)))


shared_template = pn.template.BootstrapTemplate(title="Object app", main=[pn.pane.Markdown("a template object")])

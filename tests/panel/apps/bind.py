"""pn.bind: a TextInput bound to a Markdown pane through a function."""

import panel as pn

name = pn.widgets.TextInput(label="Name", value="world")


def greet(text):
    return f"Hello, {text}!"


pn.Column(name, pn.pane.Markdown(pn.bind(greet, name))).servable()

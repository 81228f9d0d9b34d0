"""A FastListTemplate with a sidebar widget that drives the main area."""

import panel as pn

count = pn.widgets.IntSlider(label="Count", start=1, end=10, value=3)


def stars(n):
    return "stars: " + "x" * n


pn.template.FastListTemplate(
    title="Template app",
    sidebar=[count],
    main=[pn.pane.Markdown(pn.bind(stars, count))],
).servable()

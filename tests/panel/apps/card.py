"""A Panel app with a custom component whose stylesheet comes from the component-resources route."""

import panel as pn

from tests.panel.apps.card_component import Card

card = Card(text="clicked 0 times")
card.param.watch(lambda event: setattr(card, "text", f"clicked {event.new} times"), "clicks")
pn.Column(card).servable()

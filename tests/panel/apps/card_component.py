"""A custom Panel component whose stylesheet is a file next to this module (Panel's component-resources route)."""

import panel as pn
import param


class Card(pn.custom.JSComponent):
    """A text in a box; card.css gives the box its colour, clicks count in Python."""

    text = param.String(default="a card")
    clicks = param.Integer(default=0)

    _esm = """
    export function render({ model, el }) {
      const card = document.createElement("div")
      card.className = "test-card"
      card.textContent = model.text
      card.addEventListener("click", () => { model.clicks += 1 })
      model.on("text", () => { card.textContent = model.text })
      el.appendChild(card)
    }
    """
    _stylesheets = ["card.css"]

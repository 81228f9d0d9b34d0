"""A model whose new rows appear live in the `live` Bokeh app (through broadcast)."""

from django.db import models


class Reading(models.Model):
    """One measurement: saved from the admin or the demo's form, plotted live."""

    value = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.value} at {self.created_at:%H:%M:%S}"

"""Matches URL segments that name a registered Bokeh app (and nothing else).

Raising ValueError for unknown names lets Django go on to the site's other URL patterns,
so the apps can be included at the site root without shadowing it.
"""

from __future__ import annotations

from django.urls import register_converter

from . import registry

__all__ = ("AppNameConverter",)


class AppNameConverter:
    regex = r"[A-Za-z0-9_\-][A-Za-z0-9_\-.]*(?:/[A-Za-z0-9_\-][A-Za-z0-9_\-.]*)*"

    def to_python(self, value: str) -> str:
        if value not in registry.registered_apps():
            raise ValueError(value)
        return value

    def to_url(self, value: str) -> str:
        return value


# Registered once, when this module is first imported (by urls.py and routing.py).
register_converter(AppNameConverter, "bokehapp")

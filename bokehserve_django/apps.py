"""Registers bokehserve_django with Django: system checks, and nothing else at import time."""

from __future__ import annotations

from django.apps import AppConfig


class BokehServeConfig(AppConfig):
    name = "bokehserve_django"
    verbose_name = "Bokeh server"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)

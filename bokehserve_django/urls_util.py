"""Builds the URLs of registered apps from the site's URLconf (prefix and includes included)."""

from __future__ import annotations

from django.urls import reverse

__all__ = ("app_url", "websocket_url")


def app_url(app_name: str) -> str:
    """The path of an app's page, e.g. "/sliders" or "/bokeh/sliders"."""
    return reverse("bokehserve_django:app_page", kwargs={"app_name": app_name})


def websocket_url(app_name: str) -> str:
    """The path of an app's WebSocket."""
    return app_url(app_name).rstrip("/") + "/ws"

"""URL patterns for the HTTP side of the registered Bokeh apps; include them in a site's URLconf::

    path("", include("bokehserve_django.urls")),

BOKEHSERVE["PREFIX"] (or runbokeh --prefix) is applied here, when the URLconf is imported.
"""

from __future__ import annotations

from django.urls import include, path

from . import (
    converters,  # noqa: F401  (registers the "bokehapp" path converter)
    views,
)
from .conf import bokeh_settings

app_name = "bokehserve_django"

_app_patterns = [
    # bokeh serve's layout for BokehJS and extensions (before the apps: "static" is reserved).
    path("static/<path:path>", views.bokeh_static, name="bokeh_static"),
    # Panel's component-resources route (files that custom Panel components list).
    path("components/<path:path>", views.panel_component_resource, name="panel_component_resource"),
    path("<bokehapp:app_name>/autoload.js", views.autoload_js, name="autoload_js"),
    path("<bokehapp:app_name>/metadata", views.metadata, name="metadata"),
    path("<bokehapp:app_name>/static/<path:path>", views.app_static, name="app_static"),
    path("<bokehapp:app_name>/", views.app_page, name="app_page_slash"),
    path("<bokehapp:app_name>", views.app_page, name="app_page"),
    path("bokehserve-stats/", views.stats, name="stats"),
    path("", views.index, name="index"),
]

_prefix = bokeh_settings.prefix
urlpatterns = [path(f"{_prefix}/", include(_app_patterns))] if _prefix else list(_app_patterns)
urlpatterns.append(path("favicon.ico", views.favicon, name="favicon"))

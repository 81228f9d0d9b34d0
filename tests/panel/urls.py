"""URLs for the Panel tests' servers: the apps, Django's sign-in views, and a Django page embedding a Panel app."""

from django.http import HttpResponse
from django.template import engines
from django.urls import include, path

EMBED_PAGE = """{% load bokehserve %}<!doctype html>
<html><head><title>A Django page</title></head>
<body><h1>A Django page with a Panel app in it</h1>{% bokeh_app "bind" %}</body></html>"""


def embedded_panel_app(request):
    """A site's own page that embeds a Panel app with the template tag."""
    template = engines["django"].from_string(EMBED_PAGE)
    return HttpResponse(template.render({}, request))


urlpatterns = [
    path("accounts/", include("django.contrib.auth.urls")),
    path("django/embedded-panel", embedded_panel_app),
    path("", include("bokehserve_django.urls")),
]

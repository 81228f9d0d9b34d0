"""URLs for the security tests: the Bokeh apps, Django's auth views, and a view that embeds a
session it created itself with ``generate_session_id()`` + ``server_session(...)``."""

from django.http import HttpResponse
from django.urls import include, path

from bokehserve_django.embed import session_script
from bokehserve_django.signing import generate_session_id


def embedded_session(request):
    """The guide's recipe: a Django view picks a (signed) session id and embeds it."""
    script = session_script(request, "echo", generate_session_id())
    return HttpResponse(f"<!doctype html><html><head><title>embed</title></head><body>{script}</body></html>")


urlpatterns = [
    path("accounts/", include("django.contrib.auth.urls")),
    path("django/embedded-session", embedded_session),
    path("", include("bokehserve_django.urls")),
]

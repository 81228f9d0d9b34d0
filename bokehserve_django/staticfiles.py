"""Serves static files (BokehJS) from runbokeh, answering odd paths with a short plain 404.

Django's ASGIStaticFilesHandler lets SuspiciousFileOperation (``..`` in the path) and
ValueError (a NUL byte) escape as server errors, and turns its own Http404 into Django's
debug page under DEBUG (which names the file system paths it tried).

Where STATIC_URL is the ``static/`` of this package's URL root (the default ``/static/``
with no prefix), this handler also stands in for views.bokeh_static, which it hides: a
file the finders lack is looked up in bokeh serve's layout (``js/bokeh.min.js``), so code
that builds bokeh serve's URLs gets the same answer as under any other STATIC_URL.
"""

from __future__ import annotations

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.exceptions import SuspiciousFileOperation
from django.http import Http404, HttpResponseNotFound

__all__ = ("StaticFilesHandler",)


class StaticFilesHandler(ASGIStaticFilesHandler):
    def serve(self, request):
        if "\x00" in request.path:
            return self.not_found()
        try:
            return super().serve(request)
        except (Http404, SuspiciousFileOperation, ValueError):
            # The finders' safe_join refuses paths that leave their roots; answer those
            # exactly like a missing file, so a probe learns nothing.
            return self._bokeh_serve_layout(request) or self.not_found()

    def _bokeh_serve_layout(self, request):
        from .resources import site_root_url
        from .views import bokeh_static

        if self.base_url.path != site_root_url() + "static/":
            return None  # then the URLconf routes bokeh serve's layout to views.bokeh_static
        response = bokeh_static(request, self.file_path(request.path))
        return response if response.status_code == 200 else None

    @staticmethod
    def not_found() -> HttpResponseNotFound:
        return HttpResponseNotFound("No such static file.\n", content_type="text/plain; charset=utf-8")

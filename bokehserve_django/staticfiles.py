"""Serves static files (BokehJS) from runbokeh, answering odd paths with a short plain 404.

Django's ASGIStaticFilesHandler lets SuspiciousFileOperation (``..`` in the path) and
ValueError (a NUL byte) escape as server errors, and turns its own Http404 into Django's
debug page under DEBUG (which names the file system paths it tried).
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
            return self.not_found()

    @staticmethod
    def not_found() -> HttpResponseNotFound:
        return HttpResponseNotFound("No such static file.\n", content_type="text/plain; charset=utf-8")

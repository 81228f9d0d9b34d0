"""Serves static files (BokehJS) from runbokeh, answering odd paths with 404 instead of 500.

Django's ASGIStaticFilesHandler lets SuspiciousFileOperation (``..`` in the path) and
ValueError (a NUL byte) escape as server errors.
"""

from __future__ import annotations

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.exceptions import SuspiciousFileOperation
from django.http import Http404

__all__ = ("StaticFilesHandler",)


class StaticFilesHandler(ASGIStaticFilesHandler):
    def serve(self, request):
        if "\x00" in request.path:
            raise Http404("No such static file")
        try:
            return super().serve(request)
        except (SuspiciousFileOperation, ValueError) as exc:
            raise Http404("No such static file") from exc

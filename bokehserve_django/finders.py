"""Exposes BokehJS, shipped inside the ``bokeh`` package, to Django staticfiles as ``bokeh/...``.

Add ``bokehserve_django.finders.BokehJSFinder`` to ``STATICFILES_FINDERS`` (next to Django's
two default finders); ``collectstatic`` then copies BokehJS. Nothing adds it for you: a
site's STATICFILES_FINDERS is its own, so check E002 reports the missing finder instead
when ``BOKEHSERVE["RESOURCES"]`` is ``"server"``.
"""

from __future__ import annotations

from bokeh.util.paths import bokehjs_path
from django.contrib.staticfiles.finders import FileSystemFinder
from django.core.files.storage import FileSystemStorage

from .resources import STATIC_PREFIX

__all__ = ("BokehJSFinder",)


class BokehJSFinder(FileSystemFinder):
    """Finds bokeh's ``server/static`` files (js/, lib/) under the prefix ``bokeh/``."""

    def __init__(self, app_names=None, *args, **kwargs) -> None:
        root = str(bokehjs_path())
        self.locations = [(STATIC_PREFIX, root)]
        storage = FileSystemStorage(location=root)
        storage.prefix = STATIC_PREFIX
        self.storages = {root: storage}

    def check(self, **kwargs):
        return []

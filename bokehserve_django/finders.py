"""Exposes BokehJS and the installed Bokeh extensions to Django staticfiles.

BokehJS, shipped inside the ``bokeh`` package, appears as ``bokeh/...``; each installed
Bokeh extension (Panel, custom model packages: see extensions.py) as
``extensions/<package>/...``, the layout of bokeh serve's ``/static/extensions/``.

Add ``bokehserve_django.finders.BokehJSFinder`` to ``STATICFILES_FINDERS`` (next to Django's
two default finders); ``collectstatic`` then copies BokehJS and the extensions. Nothing adds
it for you: a site's STATICFILES_FINDERS is its own, so check E002 reports the missing finder
instead when ``BOKEHSERVE["RESOURCES"]`` is ``"server"``.
"""

from __future__ import annotations

from bokeh.util.paths import bokehjs_path
from django.contrib.staticfiles.finders import FileSystemFinder
from django.core.files.storage import FileSystemStorage

from .extensions import EXTENSIONS_PREFIX, installed_extensions
from .resources import STATIC_PREFIX

__all__ = ("BokehJSFinder",)


class BokehJSFinder(FileSystemFinder):
    """Finds bokeh's ``server/static`` files (js/, lib/) under ``bokeh/``, extensions under ``extensions/<package>/``."""

    def __init__(self, app_names=None, *args, **kwargs) -> None:
        self.locations = [(STATIC_PREFIX, str(bokehjs_path()))]
        self.locations += [
            (f"{EXTENSIONS_PREFIX}/{name}", str(folder))
            for name, folder in sorted(installed_extensions().items())
        ]
        self.storages = {}
        for prefix, root in self.locations:
            storage = FileSystemStorage(location=root)
            storage.prefix = prefix
            self.storages[root] = storage

    def check(self, **kwargs):
        return []

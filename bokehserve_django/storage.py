"""A manifest static files storage that copes with the files BokehJS and Bokeh extensions ship.

Django's ``ManifestStaticFilesStorage`` rewrites every ``url(...)`` in every collected CSS
file to the hashed name of the file it points at, and fails ``collectstatic`` when that file
does not exist (JavaScript's ``sourceMappingURL`` comments too). The files BokehJSFinder
offers break that rule: bokeh 3.9's ``bokeh/js/compiler.js`` holds the text of such a
comment in a string, and Panel 1.9's bundled KaTeX CSS names font files its wheel lacks.
A site using Django's manifest storage could not run ``collectstatic`` at all.

This storage leaves such a reference as it is, for files under ``bokeh/`` and
``extensions/`` only: the browser asks for the missing file and gets a 404, exactly as
under bokeh serve or Panel's own server. Everywhere else a missing file still fails
``collectstatic``, as Django intends.
Use it in place of Django's::

    STORAGES = {..., "staticfiles": {"BACKEND": "bokehserve_django.storage.ManifestStaticFilesStorage"}}
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from django.contrib.staticfiles import storage

from .extensions import EXTENSIONS_PREFIX
from .resources import STATIC_PREFIX

__all__ = ("ManifestStaticFilesStorage",)


class ManifestStaticFilesStorage(storage.ManifestStaticFilesStorage):
    def hashed_name(self, name, content=None, filename=None):
        if content is None and _offered_by_bokeh(filename or name) and not self.exists(_path_of(filename or name)):
            return name
        return super().hashed_name(name, content, filename)


def _path_of(name: str) -> str:
    return urlsplit(unquote(name)).path.strip()


def _offered_by_bokeh(name: str) -> bool:
    """Whether ``name`` is among the files BokehJSFinder offers (BokehJS, extensions)."""
    return _path_of(name).startswith((f"{STATIC_PREFIX}/", f"{EXTENSIONS_PREFIX}/"))

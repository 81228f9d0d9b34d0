"""Builds the BokehJS resources (script and style URLs) that pages and autoload.js load.

In "server" mode BokehJS comes from this site's static files (``bokeh/js/...`` through
Django staticfiles: the finder in development, STATIC_ROOT after collectstatic), so
pages work with no internet access.

Bokeh extensions (Panel, custom model packages) come from the site's static files too, as
``extensions/<package>/...`` (extensions.py finds them, finders.py offers them): bokeh's
bundler writes their URLs under ``root_url``, in bokeh serve's layout, and ``bundle_for``
points them at the static files storage instead. ``root_url`` is the root of this
package's URLs (prefix included), where views answer the bokeh serve layout for code that
builds such URLs itself, as Panel does; never bokeh's default ``http://localhost:5006/``.

Every mode also loads ``bokehserve_django/recover.js`` ahead of BokehJS: it reloads the
page when the server says the page's session is gone (close code 4010) or the cluster
stays unavailable (4009); see docs/page-recovery.md. It has to run before BokehJS opens
its WebSocket, which is why it rides in the resources (first script of the page, first
URL autoload.js loads) and not in a template.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from bokeh.embed.bundle import URL, Bundle, bundle_for_objs_and_resources
from bokeh.resources import Resources, Urls
from django.contrib.staticfiles import finders
from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.core.exceptions import ImproperlyConfigured
from django.urls import NoReverseMatch, reverse

from .conf import bokeh_settings
from .extensions import EXTENSIONS_PREFIX

__all__ = (
    "RECOVER_JS",
    "STATIC_PREFIX",
    "RecoveringResources",
    "StaticFilesResources",
    "bundle_for",
    "resources_for",
    "site_scripts",
    "site_root_url",
)

#: Where BokehJS lives among the site's static files.
STATIC_PREFIX = "bokeh"

#: The page recovery script among the site's static files (this app's static/ folder).
RECOVER_JS = "bokehserve_django/recover.js"

_RECOVER_JS_PATH = Path(__file__).resolve().parent / "static" / RECOVER_JS


def _absolute(url: str, server_url: str) -> str:
    return server_url + url if server_url and url.startswith("/") else url


class RecoveringResources(Resources):
    """bokeh ``Resources`` that load recover.js before BokehJS.

    bokeh's embed code reads scripts only through ``js_files`` and ``js_raw`` (page
    templates and autoload.js alike, after ``clone()`` picks components), so prepending
    there puts recover.js ahead of BokehJS everywhere: as a static file URL in "server"
    and "cdn" modes, as an inline script in "inline" mode (a page that inlines BokehJS
    should not need the site's static files for this one either).

    ``server_url`` (scheme://host[:port]) makes the static file URL absolute, for
    autoload.js embeds in pages of another origin.
    """

    def __init__(self, mode: str, server_url: str | None = None, minified: bool = True) -> None:
        # Set before Resources.__init__, which already asks for the URLs in server mode.
        self._server_url = (server_url or "").rstrip("/")
        super().__init__(mode=mode, minified=minified)

    def clone(self, *, components: list[str] | None = None) -> RecoveringResources:
        """bokeh's embed helpers clone resources to pick components; keep our class and URLs."""
        clone = self._new()
        clone.components = list(components if components is not None else self.components)
        clone.log_level = self.log_level
        return clone

    def _new(self) -> RecoveringResources:
        return RecoveringResources(self.mode, server_url=self._server_url, minified=self.minified)

    def _recover_url(self) -> str | None:
        """recover.js's static file URL; None when the storage cannot give one.

        With a manifest storage and no collectstatic run (common in "cdn" mode, where the
        site never needed static files for Bokeh), ``url()`` raises ValueError; without
        STATIC_URL it raises ImproperlyConfigured. The script is then inlined instead, so
        a page never fails to render because of it.
        """
        try:
            url = staticfiles_storage.url(RECOVER_JS)
        except (ValueError, ImproperlyConfigured):
            return None
        return _absolute(url, self._server_url)

    @property
    def js_files(self) -> list[str]:
        files = super().js_files
        if self.mode == "inline":
            return files
        url = self._recover_url()
        return [url, *files] if url is not None else files

    @property
    def js_raw(self) -> list[str]:
        raw = super().js_raw
        if self.mode == "inline" or self._recover_url() is None:
            return [_recover_inline(), *raw]
        return raw

    def site_scripts(self) -> tuple[list[str], list[str]]:
        """What this site loads ahead of BokehJS on every page: (URLs, inline scripts).

        For renderers that build their own resources (Panel's page), which must still load
        recover.js first.
        """
        url = None if self.mode == "inline" else self._recover_url()
        return ([url], []) if url is not None else ([], [_recover_inline()])


@functools.cache
def _recover_inline() -> str:
    # The file the finders would serve (a project's own static/ may override it), else the
    # app's copy when the finders are not set up to find it. Read once per process, as
    # static files do not change while it runs.
    path = finders.find(RECOVER_JS) or _RECOVER_JS_PATH
    return Resources._inline(Path(path))


def site_root_url(server_url: str | None = None) -> str:
    """The root of this package's URLs, ending in "/": "/" or "/<prefix>/", after ``server_url`` if given.

    Where the site includes ``bokehserve_django.urls`` under a path of its own, that path is
    part of it; without the URLconf (a script building resources) it is the prefix alone.
    """
    try:
        root = reverse("bokehserve_django:index")
    except NoReverseMatch:
        root = f"/{bokeh_settings.prefix}/" if bokeh_settings.prefix else "/"
    return _absolute(root if root.endswith("/") else root + "/", (server_url or "").rstrip("/"))


class StaticFilesResources(RecoveringResources):
    """bokeh ``Resources`` in server mode whose URLs come from Django's static files storage."""

    def __init__(self, server_url: str | None = None, minified: bool = True) -> None:
        super().__init__("server", server_url=server_url, minified=minified)
        # bokeh's bundler writes extension URLs under root_url (see bundle_for).
        self._root_url = site_root_url(server_url)

    def _new(self) -> StaticFilesResources:
        return StaticFilesResources(server_url=self._server_url, minified=self.minified)

    def _server_urls(self) -> Urls:
        suffix = ".min" if self.minified else ""
        server_url = self._server_url

        def urls(components: list[str], kind: str) -> list[str]:
            return [
                _absolute(
                    staticfiles_storage.url(f"{STATIC_PREFIX}/{kind}/{component}{suffix}.{kind}"), server_url
                )
                for component in components
            ]

        return Urls(urls=urls)

    @property
    def js_files(self) -> list[str]:
        return [self.extension_url(url) for url in super().js_files]

    @property
    def css_files(self) -> list[str]:
        return [self.extension_url(url) for url in super().css_files]

    def extension_url(self, url: str) -> str:
        """A URL of an extension's file in bokeh serve's layout, pointed at the static files storage.

        Two writers use that layout: bokeh's bundler writes
        ``<root_url>static/extensions/<package>/<file>?v=<version hash>``, and extension
        models name their own scripts and styles (``__javascript__``, ``__css__``) as
        ``static/extensions/<package>/...``, relative to the page (Panel's do). The query
        busts caches when the package is upgraded; a manifest storage's hashed name already
        does, so it is dropped there. A file the storage has no name for (a manifest storage
        before collectstatic) keeps its URL, which views.bokeh_static answers.
        """
        match = _RELATIVE_EXTENSION_URL.match(url)
        layout = f"{self.root_url}static/{EXTENSIONS_PREFIX}/"
        if url.startswith(layout):
            path, _, query = url[len(layout) :].partition("?")
        elif match is not None:
            path, _, query = match.group("rest").partition("?")
        else:
            return url
        try:
            static = staticfiles_storage.url(f"{EXTENSIONS_PREFIX}/{path}")
        except (ValueError, ImproperlyConfigured):
            return url
        if query and not isinstance(staticfiles_storage, ManifestFilesMixin):
            static = f"{static}?{query}"
        return _absolute(static, self._server_url)


#: ``static/extensions/...`` relative to the page, as Panel writes it: with ``./`` or ``../``
#: steps (``pn.state.rel_path``) that lead back to the root of this package's URLs.
_RELATIVE_EXTENSION_URL = re.compile(rf"^(?:\.\.?/)*static/{EXTENSIONS_PREFIX}/(?P<rest>.+)$")


def site_scripts(resources: Resources) -> tuple[list[str], list[str]]:
    """What the site loads ahead of BokehJS with ``resources``: (URLs, inline scripts)."""
    if isinstance(resources, RecoveringResources):
        return resources.site_scripts()
    return [], []


def bundle_for(resources: Resources | None) -> Bundle:
    """bokeh's bundle of scripts and styles for a page or autoload.js, extensions from static files."""
    bundle = bundle_for_objs_and_resources(None, resources)
    if isinstance(resources, StaticFilesResources):
        bundle.js_files = [URL(resources.extension_url(str(url))) for url in bundle.js_files]
    return bundle


def resources_for(server_url: str | None = None) -> Resources:
    """The resources the settings ask for (RESOURCES, MINIFIED), absolute when ``server_url`` is given."""
    mode = bokeh_settings.RESOURCES
    minified = bokeh_settings.MINIFIED
    if mode == "server":
        return StaticFilesResources(server_url=server_url, minified=minified)
    return RecoveringResources(mode, server_url=server_url, minified=minified)

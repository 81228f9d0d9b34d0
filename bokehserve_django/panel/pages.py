"""Renders the pages of Panel apps with Panel's renderer, as ``panel serve`` does.

Panel's page (panel.io.server.server_html_page_for_session) brings its base template, its
theme, the loading spinner and component stylesheets from Panel's own files instead of a CDN.
Two things stay the site's: the scripts it loads ahead of BokehJS on every page (recover.js,
see docs/page-recovery.md) stay first, and in "server" mode BokehJS and extension files come
from the site's static files (STATIC_URL), as on Bokeh pages, not from bokeh serve's
``static/js/`` layout relative to the page (which nginx serving STATIC_ROOT would not have).
Imports panel.
"""

from __future__ import annotations

import copy
from typing import Any

from bokeh.resources import Resources as BokehResources, Urls
from panel.io.resources import Resources as PanelResources
from panel.io.server import server_html_page_for_session

from ..resources import StaticFilesResources, site_scripts

__all__ = ("SiteResources", "render_page")


class SiteResources(PanelResources):
    """Panel's resources for the site's mode and URLs, with the site's own scripts first."""

    #: Set right after construction; None while bokeh's __init__ already asks for URLs.
    _site: BokehResources | None = None
    _site_files: list[str]
    _site_raw: list[str]

    @classmethod
    def for_site(cls, site: BokehResources) -> SiteResources:
        # absolute: Panel otherwise strips root_url from the URLs it is given, turning the
        # site's "/static/..." into "static/...", relative to the page.
        resources = cls.from_bokeh(site, absolute=True)
        resources._site = site
        resources._site_files, resources._site_raw = site_scripts(site)
        return resources

    def clone(self, *, components: list[str] | None = None) -> SiteResources:
        # Panel's clone builds a plain Resources: the site's scripts would be lost.
        clone = copy.copy(self)
        clone.components = list(components if components is not None else self.components)
        return clone

    def _server_urls(self) -> Urls:
        if isinstance(self._site, StaticFilesResources):
            return self._site._server_urls()
        return super()._server_urls()

    def _from_static_files(self, urls: list[str]) -> list[str]:
        if isinstance(self._site, StaticFilesResources):
            return [self._site.extension_url(url) for url in urls]
        return urls

    @property
    def js_files(self) -> list[str]:
        return [*self._site_files, *self._from_static_files(super().js_files)]

    @property
    def css_files(self) -> list[str]:
        return self._from_static_files(super().css_files)

    @property
    def js_raw(self) -> list[str]:
        return [*self._site_raw, *super().js_raw]


def render_page(page_session: Any, site_resources: BokehResources) -> str:
    """Panel's page for a session (its document, id and token), with the site's resources."""
    document = page_session.document
    return server_html_page_for_session(
        page_session,
        resources=SiteResources.for_site(site_resources),
        title=document.title,
        token=page_session.token,
        template=document.template,
        template_variables=document.template_variables,
    )

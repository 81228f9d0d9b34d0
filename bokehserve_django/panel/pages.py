"""Renders the pages of Panel apps with Panel's renderer, as ``panel serve`` does.

Panel's page (panel.io.server.server_html_page_for_session) brings its base template, its
theme, the loading spinner and component stylesheets from Panel's own files instead of a CDN.
The scripts this site loads ahead of BokehJS on every page (recover.js, see
docs/page-recovery.md) stay first. Imports panel.
"""

from __future__ import annotations

import copy
from typing import Any

from bokeh.resources import Resources as BokehResources
from panel.io.resources import Resources as PanelResources
from panel.io.server import server_html_page_for_session

__all__ = ("SiteResources", "render_page")


def _scripts_before_bokehjs(site: BokehResources) -> tuple[list[str], list[str]]:
    """What the site's resources load on top of what bokeh itself would: (URLs, inline scripts)."""
    bokeh_files = BokehResources.js_files.fget(site)  # type: ignore[attr-defined]
    bokeh_raw = BokehResources.js_raw.fget(site)  # type: ignore[attr-defined]
    return [f for f in site.js_files if f not in bokeh_files], [r for r in site.js_raw if r not in bokeh_raw]


class SiteResources(PanelResources):
    """Panel's resources for the site's mode and URLs, with the site's own scripts first."""

    _site_files: list[str]
    _site_raw: list[str]

    @classmethod
    def for_site(cls, site: BokehResources) -> SiteResources:
        resources = cls.from_bokeh(site)
        resources._site_files, resources._site_raw = _scripts_before_bokehjs(site)
        return resources

    def clone(self, *, components: list[str] | None = None) -> SiteResources:
        # Panel's clone builds a plain Resources: the site's scripts would be lost.
        clone = copy.copy(self)
        clone.components = list(components if components is not None else self.components)
        return clone

    @property
    def js_files(self) -> list[str]:
        return [*self._site_files, *super().js_files]

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

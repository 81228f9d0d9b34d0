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
import json
from typing import Any

from bokeh.core.templates import AUTOLOAD_JS
from bokeh.embed.bundle import Script
from bokeh.embed.elements import script_for_render_items
from bokeh.embed.util import RenderItem
from bokeh.resources import Resources as BokehResources, Urls
from panel.config import config
from panel.io.resources import LOCAL_DIST, Resources as PanelResources, bundle_resources, patch_model_css
from panel.io.server import server_html_page_for_session
from panel.io.state import set_curdoc, state

from ..resources import StaticFilesResources, site_root_url, site_scripts

__all__ = ("SiteResources", "render_autoload", "render_page")


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


def render_autoload(
    page_session: Any, site_resources: BokehResources, element_id: str, app_path: str, absolute_url: str | None
) -> str:
    """Panel's autoload.js for a session: Panel's bundle (its models' scripts and styles),
    with component stylesheets on this server, as Panel's own autoload handler gives.

    ``app_path`` and ``absolute_url`` go into the script as they are: the caller hands in
    the inside of safe JavaScript string literals. ``element_id`` is the request's own.
    """
    document = page_session.document
    with set_curdoc(document):
        # An embed's session has this server's absolute root as rel_path (builder.py); a
        # session made another way (server_session() of a page session) gets the site root.
        root = state.rel_path
    absolute_root = root.startswith(("http://", "https://"))
    _use_dist_url(document, f"{root}/{LOCAL_DIST}" if absolute_root else f"{site_root_url()}{LOCAL_DIST}")
    with set_curdoc(document):
        bundle = bundle_resources(document.roots, SiteResources.for_site(site_resources))
    render_items = [RenderItem(token=page_session.token, elementid=element_id, use_for_title=False)]
    bundle.add(Script(script_for_render_items({}, render_items, app_path=app_path, absolute_url=absolute_url)))
    return AUTOLOAD_JS.render(bundle=bundle, elementid=json.dumps(element_id)[1:-1])


def _use_dist_url(document: Any, dist_url: str) -> None:
    """Point the document's Panel stylesheets at ``dist_url``, as Panel's page renderer does:
    those its models were built with (they name Panel's CDN until a page is rendered) and,
    through the template variable, those of components added later."""
    document._template_variables["theme_name"] = config.theme
    document._template_variables["dist_url"] = dist_url
    for root in document.roots:
        patch_model_css(root, dist_url=dist_url)

"""Builds the BokehJS resources (script and style URLs) that pages and autoload.js load.

In "server" mode BokehJS comes from this site's static files (``bokeh/js/...`` through
Django staticfiles: the finder in development, STATIC_ROOT after collectstatic), so
pages work with no internet access.
"""

from __future__ import annotations

from bokeh.resources import Resources, Urls
from django.contrib.staticfiles.storage import staticfiles_storage

from .conf import bokeh_settings

__all__ = ("STATIC_PREFIX", "StaticFilesResources", "resources_for")

#: Where BokehJS lives among the site's static files.
STATIC_PREFIX = "bokeh"


class StaticFilesResources(Resources):
    """bokeh ``Resources`` in server mode whose URLs come from Django's static files storage.

    ``server_url`` (scheme://host[:port]) makes them absolute, for autoload.js embeds in
    pages of another origin.
    """

    def __init__(self, server_url: str | None = None, minified: bool = True) -> None:
        # Set before Resources.__init__, which already asks for the URLs.
        self._server_url = (server_url or "").rstrip("/")
        super().__init__(mode="server", minified=minified)

    def clone(self, *, components: list[str] | None = None) -> StaticFilesResources:
        """bokeh's embed helpers clone resources to pick components; keep our URLs in the clone."""
        clone = StaticFilesResources(server_url=self._server_url, minified=self.minified)
        clone.components = list(components if components is not None else self.components)
        clone.log_level = self.log_level
        return clone

    def _server_urls(self) -> Urls:
        suffix = ".min" if self.minified else ""
        server_url = self._server_url

        def urls(components: list[str], kind: str) -> list[str]:
            result = []
            for component in components:
                url = staticfiles_storage.url(f"{STATIC_PREFIX}/{kind}/{component}{suffix}.{kind}")
                if server_url and url.startswith("/"):
                    url = server_url + url
                result.append(url)
            return result

        return Urls(urls=urls)


def resources_for(server_url: str | None = None) -> Resources:
    """The resources the settings ask for (RESOURCES, MINIFIED), absolute when ``server_url`` is given."""
    mode = bokeh_settings.RESOURCES
    minified = bokeh_settings.MINIFIED
    if mode == "server":
        return StaticFilesResources(server_url=server_url, minified=minified)
    return Resources(mode=mode, minified=minified)

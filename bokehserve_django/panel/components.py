"""Finds the files Panel components name relative to their module: Panel's component-resources route.

A custom component (``pn.custom.JSComponent``, ``ReactiveHTML``, a template) may list files
next to its module: ``_stylesheets = ["card.css"]``, ``__javascript__``, a template's
``_resources``. Panel writes their URLs as ``<root>/components/<module>/<Class>/<attribute>/<file>``
(panel.io.resources.component_resource_path) and ``panel serve`` answers them with
``ComponentResourceHandler``, whose resolution (only files the component lists; nothing
else of its folder) this module reuses. One rule of our own: the module must already be
imported (a session that rendered the component imported it), so a URL cannot make the
server import a module it never used. Imports panel.
"""

from __future__ import annotations

import sys

from panel.io.server import ComponentResourceHandler
from tornado.web import HTTPError

from ..exceptions import ComponentResourceNotFound

__all__ = ("component_resource_file",)


def component_resource_file(path: str) -> str:
    """The file that ``components/<path>`` names; ComponentResourceNotFound if none may be served."""
    module_name = path.split("/", 1)[0]
    if module_name not in sys.modules:
        raise ComponentResourceNotFound(404, "Module not found")
    try:
        # parse_url_path reads only class attributes: Panel's FastAPI route calls it the same way.
        return ComponentResourceHandler.parse_url_path(ComponentResourceHandler, path)  # type: ignore[arg-type]
    except HTTPError as exc:
        raise ComponentResourceNotFound(exc.status_code, exc.log_message or exc.reason or "Not found") from None

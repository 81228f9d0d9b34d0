"""Decides which apps are Panel apps, and hands those to Panel's builder when Panel is installed.

The ``bokehserve_django.panel`` package is the only place that imports panel, and this module
itself never does: it reads files and types to apply the rule below, and imports
``bokehserve_django.panel.builder`` (which imports panel) only for an app that needs it.

The rule (docs/panel.md, "Which apps are Panel apps"), checked in this order:

1. a ``.md`` file;
2. a ``.py`` script, ``.ipynb`` notebook, or directory app whose ``main.py``/``main.ipynb``,
   has a line starting with ``import panel`` or ``from panel``;
3. a Panel object: an instance of a class defined in the ``panel`` package or derived from one
   (a pane, a layout, a template, a ``pn.viewable.Viewer``);
4. a function that takes no arguments (bokeh's function apps take the document; Panel's
   return a Panel object).

Everything else is built by bokeh's handlers, as before.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import sys
from typing import TYPE_CHECKING, Any

from ..exceptions import PanelNotInstalled

if TYPE_CHECKING:
    from bokeh.application import Application

__all__ = (
    "build_panel_application",
    "component_resource_file",
    "is_panel_application",
    "is_panel_spec",
    "names_panel",
    "panel_installed",
    "render_autoload",
    "render_page",
    "use_global_loading_spinner",
)

#: A line of Python that imports panel (``import panel as pn``, ``from panel.widgets import ...``).
_IMPORTS_PANEL = re.compile(r"^[ \t]*(import[ \t]+panel\b|from[ \t]+panel\b)", re.MULTILINE)

_BUILDER_MODULE = f"{__name__}.builder"


def panel_installed() -> bool:
    """Whether panel can be imported, found without importing it."""
    try:
        return importlib.util.find_spec("panel") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules["panel"] is None or has no spec
        return False


def names_panel(module_name: str | None) -> bool:
    """Whether a missing module (ModuleNotFoundError.name) is panel or part of it."""
    return module_name is not None and module_name.split(".")[0] == "panel"


def is_panel_spec(spec: Any) -> bool:
    """Whether the rule above makes ``spec`` (a path, an object, a function) a Panel app."""
    if isinstance(spec, str | os.PathLike):
        return _is_panel_path(os.path.abspath(os.path.expanduser(os.fspath(spec))))
    if _is_panel_object(spec):
        return True
    return _is_argumentless_function(spec)


def build_panel_application(spec: Any, argv: list[str] | None = None) -> Application:
    """Panel's Application for ``spec``; PanelNotInstalled if panel cannot be imported."""
    if not panel_installed():
        raise PanelNotInstalled(f"The Panel app {os.fspath(spec) if isinstance(spec, os.PathLike) else spec!r}")
    from .builder import build_application

    return build_application(spec, list(argv or []))


def use_global_loading_spinner() -> None:
    """Show Panel's loading spinner over each Panel page until it has rendered (``panel serve
    --global-loading-spinner``); PanelNotInstalled without Panel."""
    if not panel_installed():
        raise PanelNotInstalled("--global-loading-spinner")
    from panel.config import config

    config.global_loading_spinner = True


def render_page(page_session: Any, site_resources: Any) -> str:
    """Panel's page for a session of a Panel app (``page_session``: document, id, token)."""
    from .pages import render_page as render_with_panel

    return render_with_panel(page_session, site_resources)


def render_autoload(
    page_session: Any, site_resources: Any, element_id: str, app_path: str, absolute_url: str | None
) -> str:
    """Panel's autoload.js for a session of a Panel app (arguments: see pages.render_autoload)."""
    from .pages import render_autoload as render_with_panel

    return render_with_panel(page_session, site_resources, element_id, app_path, absolute_url)


def component_resource_file(path: str) -> str | None:
    """The file ``components/<path>`` names (Panel's component-resources route), or None when
    Panel is not installed; ComponentResourceNotFound for a file no component lists."""
    if not panel_installed():
        return None
    from .components import component_resource_file as find

    return find(path)


def is_panel_application(application: Any) -> bool:
    """Whether ``application`` was built by build_panel_application (panel is not imported to tell)."""
    builder = sys.modules.get(_BUILDER_MODULE)
    return builder is not None and isinstance(application, builder.PanelApplication)


def _is_panel_path(path: str) -> bool:
    if path.endswith(".md") and os.path.isfile(path):
        return True
    if os.path.isdir(path):
        candidates = [os.path.join(path, "main.py"), os.path.join(path, "main.ipynb")]
    else:
        candidates = [path]
    return any(_source_imports_panel(candidate) for candidate in candidates)


def _source_imports_panel(path: str) -> bool:
    if not path.endswith((".py", ".ipynb")) or not os.path.isfile(path):
        return False
    try:
        with open(path, encoding="utf-8") as source:
            text = source.read()
    except (OSError, UnicodeDecodeError):
        return False  # bokeh's handler reports the unreadable file
    if path.endswith(".ipynb"):
        text = _notebook_code(text)
    return _IMPORTS_PANEL.search(text) is not None


def _notebook_code(text: str) -> str:
    try:
        cells = json.loads(text).get("cells", [])
    except (ValueError, AttributeError):
        return ""
    sources = []
    for cell in cells:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            source = cell.get("source", "")
            sources.append("".join(source) if isinstance(source, list) else str(source))
    return "\n".join(sources)


def _is_panel_object(spec: Any) -> bool:
    # Panel objects can only exist once panel is imported; their classes say where they come from.
    return any(
        (getattr(klass, "__module__", "") or "").split(".")[0] == "panel" for klass in type(spec).__mro__
    )


def _is_argumentless_function(spec: Any) -> bool:
    if not (inspect.isfunction(spec) or inspect.ismethod(spec)):
        return False
    try:
        signature = inspect.signature(spec)
    except (TypeError, ValueError):
        return False
    return not any(
        p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        for p in signature.parameters.values()
    )

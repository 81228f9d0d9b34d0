"""Finds the installed Bokeh extensions (Panel, custom model packages) and the files they ship.

A Bokeh extension is a top-level package with a ``bokeh.ext.json`` beside its
``__init__.py``; its compiled JavaScript sits in the folder that its ``package.json``
names as ``main``/``module`` (else ``dist/``). bokeh serve serves that folder at
``/static/extensions/<package>/`` and puts those URLs into every page; bokeh records the
folders it has seen in ``bokeh.embed.bundle.extension_dirs``, but only once a page has been
bundled, which is too late for ``collectstatic``. This module finds them up front, the same
way bokeh resolves them, so that:

- the static files finder can offer them to Django as ``extensions/<package>/...``;
- page and autoload.js bundles can point at them through the site's static files storage;
- the bokeh serve layout (``<prefix>/static/extensions/...``, ``<prefix>/static/js/...``),
  which Panel writes into its pages and models, can still be answered.

Knows nothing of HTTP.
"""

from __future__ import annotations

import functools
import json
import os
import pkgutil
from pathlib import Path

from bokeh.embed.bundle import extension_dirs
from bokeh.util.paths import bokehjs_path

__all__ = (
    "EXTENSIONS_PREFIX",
    "bokeh_serve_static_file",
    "extension_dir",
    "installed_extensions",
)

#: Where the extensions live among the site's static files: ``extensions/<package>/...``,
#: the layout of bokeh serve's ``/static/extensions/``.
EXTENSIONS_PREFIX = "extensions"


@functools.cache
def _found_on_path() -> dict[str, Path]:
    # Once per process: installed packages do not change while it runs, and scanning the
    # top level of sys.path costs a few milliseconds.
    found: dict[str, Path] = {}
    for module in pkgutil.iter_modules():
        if not module.ispkg or module.name in found:
            continue  # a package earlier on sys.path shadows later ones, as for imports
        root = getattr(module.module_finder, "path", None)
        if root is None:
            continue
        package_dir = Path(root) / module.name
        if (package_dir / "bokeh.ext.json").is_file():
            artifacts = _artifacts_dir(package_dir)
            if artifacts is not None:
                found[module.name] = artifacts
    return found


def _artifacts_dir(package_dir: Path) -> Path | None:
    """The folder of the package's built JavaScript, resolved as bokeh's bundler does."""
    package_json = package_dir / "package.json"
    if package_json.is_file():
        try:
            package = json.loads(package_json.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            package = None
        if isinstance(package, dict):
            main = package.get("module", package.get("main"))
            if isinstance(main, str) and main:
                return (package_dir / os.path.normpath(main)).parent
    dist = package_dir / "dist"
    return dist if dist.is_dir() else None


def installed_extensions() -> dict[str, Path]:
    """Every Bokeh extension this process can serve: package name -> folder of its files.

    Installed packages found on ``sys.path``, plus any that bokeh has bundled itself by now
    (an extension imported from somewhere the scan does not look, for example a package
    added to ``sys.path`` after start-up).
    """
    return {**_found_on_path(), **{name: Path(path) for name, path in extension_dirs.items()}}


def extension_dir(name: str) -> Path | None:
    """The folder of extension ``name``'s files, or None when no such extension is installed."""
    return installed_extensions().get(name)


def bokeh_serve_static_file(path: str) -> tuple[Path, str] | None:
    """Where bokeh serve would find ``/static/<path>``: (root folder, path inside it), or None.

    ``extensions/<package>/<file>`` is an extension's file; anything else is BokehJS's
    (``js/bokeh.min.js``, ``lib/...``). The caller still checks that the path stays inside
    the root folder.
    """
    head, _, rest = path.partition("/")
    if head == EXTENSIONS_PREFIX:
        name, _, inner = rest.partition("/")
        root = extension_dir(name)
        return (root, inner) if root is not None and inner else None
    return Path(bokehjs_path()), path

"""Imports every module of bokehserve_django and says which fail: for the tests that hide an
optional package (Panel, prometheus-client) in a fresh interpreter."""

from __future__ import annotations

import importlib
import pkgutil


def failing_imports() -> dict[str, str]:
    """Each bokehserve_django module that raises ImportError on import, with the error."""
    import bokehserve_django

    failed = {}
    for module in pkgutil.walk_packages(bokehserve_django.__path__, "bokehserve_django."):
        try:
            importlib.import_module(module.name)
        except ImportError as exc:
            failed[module.name] = str(exc)
    return failed

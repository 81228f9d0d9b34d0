"""Re-exports ``process_request`` for servers that follow the user guide's ``request_handler.py``.

The guide documents this file, but Bokeh 3.9's DirectoryHandler never loads it: it takes
``process_request`` from ``app_hooks.py`` (see bokeh/application/handlers/directory.py).
Defining nothing of its own keeps it harmless either way: a server that loads both files
gets the same function and the same token payload.
"""

from __future__ import annotations

from .app_hooks import process_request

__all__ = ["process_request"]

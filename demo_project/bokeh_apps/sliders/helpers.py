"""Holds the sliders app's pure helpers: the sine data, query-argument parsing and the hook log.

Imported package-relatively (``from .helpers import ...``) by ``main.py`` and ``app_hooks.py``;
touches no Bokeh document, so it is safe to call from any hook.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

HOOK_LOG_ENV = "BOKEHSERVE_DEMO_HOOK_LOG"  # names a file that gets one line per hook call
DEFAULT_POINTS = 200  # used when ?N= is missing or not a number
MIN_POINTS, MAX_POINTS = 2, 2000  # ?N= comes from any visitor: keep the work bounded
DEFAULT_APP_URL = "/sliders"  # where `bokeh serve sliders/` mounts the app


def make_data(
    points: int, amplitude: float = 1.0, offset: float = 0.0, phase: float = 0.0, freq: float = 1.0
) -> dict[str, list[float]]:
    """Return the ``x``/``y`` columns of ``offset + amplitude * sin(freq * x + phase)`` on [0, 4 pi]."""
    x = np.linspace(0, 4 * np.pi, points)
    y = offset + amplitude * np.sin(freq * x + phase)
    # Plain lists keep the wire format (and what a test reads back) free of typed-array encoding.
    return {"x": x.tolist(), "y": y.tolist()}


def first_arg(arguments: Any, name: str) -> str | None:
    """Return the first value of query argument ``name`` as text, or None.

    Accepts Tornado's ``{"N": [b"50"]}`` (what ``bokeh serve`` provides), str values, and
    mapping types such as Django's QueryDict, so the app runs unchanged under other servers.
    """
    if not arguments:
        return None
    value = arguments.get(name)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if isinstance(value, bytes):
        value = value.decode("utf8", "replace")
    return value


def parse_points(raw: str | None) -> int:
    """Turn the raw ``?N=`` value into a point count within [MIN_POINTS, MAX_POINTS]."""
    try:
        points = int(raw) if raw is not None else DEFAULT_POINTS
    except ValueError:
        points = DEFAULT_POINTS
    return max(MIN_POINTS, min(MAX_POINTS, points))


def app_url(request: Any) -> str:
    """Return the URL path of the app page, e.g. ``/sliders`` (``/<prefix>/sliders`` with --prefix).

    The app's ``static/`` directory is served under ``<app url>/static/``. The path is taken from
    the request that created the session; a session opened over the WebSocket first sees
    ``.../ws`` instead, and a request without ``path`` falls back to DEFAULT_APP_URL.
    """
    path = getattr(request, "path", None) or ""
    path = path.rstrip("/").removesuffix("/ws").removesuffix("/autoload.js")
    return path or DEFAULT_APP_URL


def record_hook(hook: str, session_id: str | None = None) -> None:
    """Append ``"<hook> <pid> <session id>"`` to the file named by $BOKEHSERVE_DEMO_HOOK_LOG, if set.

    Tests use this to count hook calls across server processes. One short ``write`` in append
    mode is a single O_APPEND write, so lines from several processes don't interleave.
    """
    path = os.environ.get(HOOK_LOG_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf8") as f:
        f.write(f"{hook} {os.getpid()} {session_id or '-'}\n")

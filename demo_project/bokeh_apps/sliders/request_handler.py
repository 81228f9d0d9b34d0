"""Defines the sliders app's ``process_request`` request hook, where the user guide puts it.

bokehserve-django reads ``process_request`` from this file (bokeh serve 3.9 reads it only
from ``app_hooks.py``; defining it in both is a start-up error). It runs in a worker thread
for each page request, before the session exists, so it may use the Django ORM.

Bokeh checks the parameter *name* (``request``).
"""

from __future__ import annotations

import logging
from typing import Any

from .helpers import first_arg, record_hook

log = logging.getLogger("demo_project.bokeh_apps.sliders")


def process_request(request: Any) -> dict[str, Any]:
    """Return extra items for the session token; ``main.py`` shows them from ``token_payload``.

    Called with the HTTP request for the app page before the session exists. Only ``path``
    and the query arguments are read, so any request object with those works.
    """
    # Tornado requests carry .arguments; Django's carry .GET. Either gives the ?N= value.
    arguments = getattr(request, "arguments", None) or getattr(request, "GET", None)
    payload = {
        "request_path": getattr(request, "path", None),
        "query_n": first_arg(arguments, "N"),
    }
    # The session id is only known here if the client supplied one in the URL.
    record_hook("process_request", first_arg(arguments, "bokeh-session-id"))
    log.info("sliders: process_request %s", payload)
    return payload

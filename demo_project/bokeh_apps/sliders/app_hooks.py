"""Defines the sliders app's lifecycle hooks and its ``process_request`` request hook.

Bokeh 3.9 reads all five functions from this file (``DirectoryHandler`` loads it twice: once
for the lifecycle hooks, once for ``process_request``), so module-level code here must stay
side-effect free. Each hook logs and, if $BOKEHSERVE_DEMO_HOOK_LOG is set, appends
``"<hook> <pid> <session id>"`` to that file (``-`` when there is no session yet).

Bokeh checks the parameter *names* (``server_context``, ``session_context``, ``request``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .helpers import first_arg, record_hook

if TYPE_CHECKING:
    from bokeh.application.application import ServerContext, SessionContext

log = logging.getLogger("demo_project.bokeh_apps.sliders")


def on_server_loaded(server_context: ServerContext) -> None:
    """Run once per server process when the application is loaded."""
    log.info("sliders: on_server_loaded")
    record_hook("on_server_loaded")


def on_server_unloaded(server_context: ServerContext) -> None:
    """Run when a server process shuts down cleanly (not on SIGKILL)."""
    log.info("sliders: on_server_unloaded")
    record_hook("on_server_unloaded")


def on_session_created(session_context: SessionContext) -> None:
    """Run for each new session, before ``main.py`` builds its document."""
    log.info("sliders: on_session_created %s", session_context.id)
    record_hook("on_session_created", session_context.id)


def on_session_destroyed(session_context: SessionContext) -> None:
    """Run after a session's document has been destroyed (unused sessions expire after a while)."""
    log.info("sliders: on_session_destroyed %s", session_context.id)
    record_hook("on_session_destroyed", session_context.id)


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

"""Defines the sliders app's lifecycle hooks; its ``process_request`` is in ``request_handler.py``.

Module-level code here must stay side-effect free: bokeh loads this file twice (once for the
lifecycle hooks, once more in case it defines ``process_request``). Each hook logs and, if
$BOKEHSERVE_DEMO_HOOK_LOG is set, appends ``"<hook> <pid> <session id>"`` to that file
(``-`` when there is no session yet). The hooks run in a worker thread, so they may use the
Django ORM (docs/apps.md, "Where your code runs").

Bokeh checks the parameter *names* (``server_context``, ``session_context``, ``request``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .helpers import record_hook

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


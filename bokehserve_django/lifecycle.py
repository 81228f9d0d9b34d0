"""Starts and stops the session runtime with the ASGI server process.

ASGI servers with lifespan support (uvicorn, hypercorn) send startup/shutdown events;
daphne does not, so on the first request we also register a Twisted "before shutdown"
trigger: SIGTERM/SIGINT then destroy sessions (running on_session_destroyed), close
clients with a close frame and run on_server_unloaded before the process exits.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .sessions import runtime

__all__ = ("LifecycleMiddleware", "install_shutdown_trigger")

logger = logging.getLogger(__name__)

_trigger_installed = False


def install_shutdown_trigger() -> None:
    """Run ``runtime.shutdown()`` before the Twisted reactor (daphne) stops, once per process."""
    global _trigger_installed
    if _trigger_installed:
        return
    _trigger_installed = True
    try:
        from twisted.internet import reactor
        from twisted.internet.defer import Deferred
    except ImportError:  # not under daphne
        return
    if not getattr(reactor, "running", False):
        return

    def before_shutdown() -> Deferred:
        return Deferred.fromFuture(asyncio.ensure_future(runtime.shutdown()))

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)


class LifecycleMiddleware:
    """ASGI middleware: lifespan events drive the runtime; other scopes start it lazily."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        install_shutdown_trigger()
        runtime.ensure_started()
        await self.app(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                runtime.ensure_started()
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await runtime.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

"""Starts and stops this process's Bokeh serving: sessions, cluster membership, relays, broadcast.

The composition root: the one place that wires the session runtime to the cluster layer.
ASGI servers with lifespan support (uvicorn, hypercorn) send startup/shutdown events;
daphne does not, so the first request starts everything, and under daphne a Twisted
"before shutdown" trigger (or BokehDaphneServer) stops it: SIGTERM/SIGINT then destroy
sessions (running on_session_destroyed), close clients with a close frame and run
on_server_unloaded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..sessions import runtime

__all__ = ("LifecycleMiddleware", "install_shutdown_trigger", "start_process", "stop_process")

logger = logging.getLogger(__name__)

_trigger_installed = False
_starting: asyncio.Future[None] | None = None


async def start_process() -> None:
    """Start sessions (on_server_loaded hooks, reaper), join the cluster, install relays. Idempotent."""
    global _starting
    loop = asyncio.get_running_loop()
    if _starting is not None and _starting.get_loop() is loop:
        await asyncio.shield(_starting)
        return
    if _starting is not None:
        # Started on an event loop that is gone (tests run one loop per test): start afresh.
        from .membership import cluster

        cluster.forget()
    _starting = loop.create_future()
    try:
        from .. import auth
        from . import broadcast
        from .membership import cluster
        from .relay import RENDER_PAGE, owner_relays
        from ..views import render_page_for_relay

        runtime.ensure_started()
        owner_relays.install()
        broadcast.install()
        auth.install()
        cluster.on(RENDER_PAGE, render_page_for_relay)
        runtime.destroy_listeners.append(cluster.release)
        await cluster.start()
    except BaseException as exc:
        _starting.set_exception(exc)
        raise
    else:
        _starting.set_result(None)


async def stop_process() -> None:
    """Destroy sessions and run on_server_unloaded, then leave the cluster."""
    global _starting
    from .membership import cluster

    await runtime.shutdown()
    await cluster.stop()
    _starting = None


def install_shutdown_trigger() -> None:
    """Run ``stop_process()`` before the Twisted reactor (daphne) stops, once per process."""
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
        return Deferred.fromFuture(asyncio.ensure_future(stop_process()))

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)


class LifecycleMiddleware:
    """ASGI middleware: lifespan events drive the process; other scopes start it lazily."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        install_shutdown_trigger()
        await start_process()
        await self.app(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                await start_process()
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await stop_process()
                await send({"type": "lifespan.shutdown.complete"})
                return

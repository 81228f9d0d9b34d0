"""Starts and stops this process's Bokeh serving: sessions, cluster membership, relays, broadcast.

Start-up is lazy and never cached as a failure: the views and the WebSocket consumer call
``ensure_started()`` themselves, so it happens however the site routes them (our
``bokeh_asgi_application`` or its own ``ProtocolTypeRouter``), and a start that failed is
tried again by the next request. Start-up never waits on Redis (see membership).

Stopping is a drain (``stop_process``): the process takes no new sessions at once, waits
up to ``DRAIN_TIMEOUT`` seconds for its live sessions to end, then destroys the rest
(on_session_destroyed runs; every client, direct or relayed, gets a close frame with a code
and a reason), gives up its Redis records so that reconnects land on live processes, and
runs on_server_unloaded. Nothing started while it stops escapes it: on_server_loaded does
not run again, and no session is created that the shutdown would not destroy.

ASGI servers with lifespan support (uvicorn, hypercorn) drive this through
``LifecycleMiddleware``; under daphne a Twisted "before shutdown" trigger (or
BokehDaphneServer) calls ``stop_process``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.utils.module_loading import import_string

from ..conf import bokeh_settings
from ..exceptions import NotAccepting
from ..protocol import CloseCode
from ..sessions import runtime
from .membership import membership

__all__ = (
    "LifecycleMiddleware",
    "configure",
    "cut_drain_short",
    "ensure_started",
    "install_shutdown_trigger",
    "stop_process",
)

logger = logging.getLogger(__name__)

#: What the composition root (apps.py) plugs in, as import strings, so that this package
#: imports neither auth nor views.
_configuration: dict[str, Any] = {"load_relayed_user": None, "render_page": None, "start_hooks": ()}


def configure(*, load_relayed_user: str, render_page: str, start_hooks: tuple[str, ...] = ()) -> None:
    """Name the functions the cluster calls back: user loading, page rendering, start hooks."""
    _configuration.update(load_relayed_user=load_relayed_user, render_page=render_page, start_hooks=tuple(start_hooks))


class _ProcessState:
    """Start/stop state of one event loop's run (tests run one loop per test)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.started: asyncio.Future[None] | None = None
        self.stopping: asyncio.Future[None] | None = None
        self.cut_short = asyncio.Event()


_state: _ProcessState | None = None
_trigger_installed = False


def _current() -> _ProcessState:
    global _state
    loop = asyncio.get_running_loop()
    if _state is None or _state.loop is not loop:
        if _state is not None:
            # The loop of an earlier run is gone: start afresh.
            membership.forget()
            runtime.reopen()
        _state = _ProcessState(loop)
    return _state


async def ensure_started() -> None:
    """Start sessions (on_server_loaded hooks, reaper), join the cluster, install relays. Idempotent.

    Raises ``NotAccepting`` once the process is stopping.
    """
    state = _current()
    if state.stopping is not None:
        raise NotAccepting("This server is shutting down; new sessions are created by the others.", retry_after=1)
    if state.started is None:
        state.started = state.loop.create_future()
        try:
            await _start()
        except BaseException as exc:
            # Not cached: the next request tries again (a failed start is not a dead process).
            future, state.started = state.started, None
            future.set_exception(exc)
            future.exception()
            logger.error("Could not start Bokeh serving in this process", exc_info=True)
            raise
        state.started.set_result(None)
    else:
        await asyncio.shield(state.started)


async def _start() -> None:
    from . import broadcast, inventory
    from .relay import owner_relays

    runtime.ensure_started()
    if _configuration["load_relayed_user"]:
        owner_relays.load_user = import_string(_configuration["load_relayed_user"])
    if _configuration["render_page"]:
        owner_relays.render_page = import_string(_configuration["render_page"])
    owner_relays.install()
    broadcast.install()
    inventory.install()
    for hook in _configuration["start_hooks"]:
        import_string(hook)()
    if _release_record not in runtime.destroy_listeners:
        runtime.destroy_listeners.append(_release_record)
    membership.on_event(_on_cluster_event)
    await membership.start()
    install_shutdown_trigger()


async def _release_record(app_name: str, session_id: str) -> None:
    from .placement import release

    await release(app_name, session_id)


async def _on_cluster_event(event: str, data: dict[str, Any]) -> None:
    """Fencing: give up sessions whose records another process now holds."""
    if event not in ("fenced", "restarted"):
        return
    from .membership import owner_key

    lost = set(data.get("lost", ()))
    for name, app_sessions in runtime.apps.items():
        for session in app_sessions.sessions:
            key = owner_key(name, session.id)
            if event == "restarted" and key not in lost:
                continue
            try:
                owner = await membership.owner_of(key)
                if owner is None and await membership.claim(key):
                    continue  # nobody took it: ours again
            except Exception:
                continue  # Redis is down again: check at the next event
            if owner != membership.process_channel:
                logger.warning("Session %r of app %r now belongs to another process; closing it here", session.id, name)
                await app_sessions.discard(
                    session, reason="This session moved to another process; reload the page", close_code=CloseCode.SESSION_GONE
                )


def cut_drain_short() -> None:
    """Stop waiting for sessions to end (a second SIGTERM): destroy them now."""
    if _state is not None:
        _state.loop.call_soon_threadsafe(_state.cut_short.set)


async def stop_process(drain_timeout: float | None = None) -> None:
    """Drain, destroy sessions, run on_server_unloaded, leave the cluster. Runs once; later calls wait for it."""
    state = _current()
    if state.stopping is not None:
        await asyncio.shield(state.stopping)
        return
    state.stopping = state.loop.create_future()
    try:
        await _stop(bokeh_settings.DRAIN_TIMEOUT if drain_timeout is None else drain_timeout, state)
    finally:
        state.stopping.set_result(None)


async def _stop(drain_timeout: float, state: _ProcessState) -> None:
    from .relay import owner_relays

    runtime.stop_accepting()
    membership.draining = True
    if state.started is not None and not state.started.done():
        await asyncio.wait([state.started], timeout=30)  # a start in progress finishes first
    # Clients relayed from here to sessions of other processes lose nothing by moving: they
    # reconnect at once, through another process, to the same session with its state.
    moved = await owner_relays.end_edges(CloseCode.GOING_AWAY, "This server is restarting; reconnecting")
    if moved:
        logger.info("Draining: closed %d relayed client(s) so that they reconnect through another process", moved)
    live = runtime.session_count
    if live and drain_timeout > 0:
        logger.info("Draining: %d live session(s); waiting up to %s s for them to end", live, drain_timeout)
        left = await runtime.drain(drain_timeout, state.cut_short)
        if left:
            logger.info("Drain over: destroying the %d session(s) still open", left)
    await runtime.shutdown()
    await owner_relays.stop()
    await membership.stop()


def install_shutdown_trigger() -> None:
    """Run ``stop_process()`` before the Twisted reactor (daphne) stops, once per process."""
    global _trigger_installed
    if _trigger_installed:
        return
    try:
        from twisted.internet import reactor
        from twisted.internet.defer import Deferred
    except ImportError:  # not under daphne
        return
    if not getattr(reactor, "running", False):
        return
    _trigger_installed = True

    def before_shutdown() -> Deferred:
        return Deferred.fromFuture(asyncio.ensure_future(stop_process()))

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)


class LifecycleMiddleware:
    """ASGI middleware: lifespan events start and stop the process (uvicorn, hypercorn)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.app(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                try:
                    await ensure_started()
                except Exception as exc:  # the server still serves Django pages; requests retry the start
                    logger.warning("Bokeh serving did not start at lifespan start-up (%s); requests will retry", exc)
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await stop_process()
                await send({"type": "lifespan.shutdown.complete"})
                return

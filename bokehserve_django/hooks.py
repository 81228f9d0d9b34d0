"""Runs app code and the apps' hooks where the Django ORM works: sync ones in the app-code pool, async ones on the loop.

The pool (``threads.AppCodePool``, one per event loop) is sized by ``APP_CODE_THREADS``,
caps each app at ``APP_CODE_THREADS_PER_APP`` and bounds each run by ``APP_CODE_TIMEOUT``.
``install()`` puts adapters on an application's hook handlers (``app_hooks.py``,
``server_lifecycle.py``, ``request_handler.py``, ``doc.on_session_destroyed`` callbacks), so
that bokeh's ``Application`` calls them in its usual order with its usual arguments, and
each runs where it can: a sync hook in a thread of the pool (no ``SynchronousOnlyOperation``),
an ``async def`` hook awaited on the server's loop (it must use Django's async ORM API or
``sync_to_async``). See docs/apps.md, "Where your code runs".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from bokeh.application.handlers.directory import DirectoryHandler
from bokeh.application.handlers.lifecycle import LifecycleHandler, _do_nothing
from bokeh.application.handlers.request_handler import RequestHandler, _return_empty
from bokeh.application.handlers.server_lifecycle import ServerLifecycleHandler

from .threads import AppCodePool, AppCodeTimeout, default_pool_size, make_run_state_per_thread

__all__ = ("AppCodeTimeout", "install", "pool", "pool_saturated", "run", "wait_from_worker")

logger = logging.getLogger(__name__)

_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AppCodePool] = weakref.WeakKeyDictionary()
#: Panel apps' code runs one at a time: Panel keeps per-run state of its own (state._launching,
#: its module recorder) that we do not make per thread.
_panel_lock = threading.Lock()
#: Apps whose code must not run concurrently with another such run (Panel apps), by name.
_serial_apps: set[str] = set()


class _Worker(threading.local):
    """The event loop that handed this worker thread its current job (None outside a job)."""

    loop: asyncio.AbstractEventLoop | None = None


_worker = _Worker()


def pool() -> AppCodePool:
    """The app-code pool of the running event loop, made from the settings on first use."""
    from .conf import bokeh_settings

    loop = asyncio.get_running_loop()
    app_pool = _pools.get(loop)
    if app_pool is None:
        size = bokeh_settings.APP_CODE_THREADS or default_pool_size()
        per_app = bokeh_settings.APP_CODE_THREADS_PER_APP or max(1, size // 2)
        app_pool = _pools[loop] = AppCodePool(size, per_app, bokeh_settings.APP_CODE_TIMEOUT)
    return app_pool


def pool_saturated() -> bool:
    """Whether the running loop's app-code pool has every thread taken (the readiness probe asks)."""
    app_pool = _pools.get(asyncio.get_running_loop())
    return app_pool is not None and app_pool.saturated


async def run(
    app_name: str,
    what: str,
    func: Callable[..., Any],
    *args: Any,
    on_late_result: Callable[[Future[Any]], None] | None = None,
) -> Any:
    """``func(*args)`` in a thread of the pool, counted against ``app_name``'s share.

    Raises AppCodeTimeout past APP_CODE_TIMEOUT (``on_late_result`` gets the result of a run
    that then ends late, on the loop).
    """
    loop = asyncio.get_running_loop()
    lock = _panel_lock if app_name in _serial_apps else None
    return await pool().run(app_name, what, _job, loop, lock, func, args, on_late_result=on_late_result)


def _job(loop: asyncio.AbstractEventLoop, lock: threading.Lock | None, func: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    from django.db import close_old_connections

    _worker.loop = loop
    try:
        with lock if lock is not None else contextlib.nullcontext():
            return func(*args)
    finally:
        _worker.loop = None
        # Worker threads are not request threads: Django would never close their connections.
        close_old_connections()


# ---------------------------------------------------------------------------
# Adapters on the handlers that hold an app's hooks
# ---------------------------------------------------------------------------


def install(application: Any, app_name: str, serial: bool = False) -> None:
    """Make ``application``'s hooks run where the ORM works (see the module docstring).

    ``serial``: the app's code and hooks run one at a time (Panel apps). Panel's own
    session handlers are left on the loop, where ``panel serve`` runs them.
    """
    make_run_state_per_thread()
    if serial:
        _serial_apps.add(app_name)
    else:
        _serial_apps.discard(app_name)
    for handler in application.handlers:
        for part in _hook_holders(handler):
            # A Panel app's other lifecycle handlers are Panel's (or carry its cleanup).
            if isinstance(part, ServerLifecycleHandler if serial else LifecycleHandler):
                _adapt_lifecycle(part, app_name)
            if isinstance(part, RequestHandler) and _inherited(part, RequestHandler, "process_request"):
                part.process_request = _sync_hook(part, "_process_request", "process_request")  # type: ignore[method-assign]


def _hook_holders(handler: Any) -> list[Any]:
    """The handler, or for a directory app the handlers of its app_hooks.py and request_handler.py."""
    if isinstance(handler, DirectoryHandler):
        return [handler._lifecycle_handler, handler._request_handler]
    return [handler]


def _adapt_lifecycle(handler: LifecycleHandler, app_name: str) -> None:
    """Adapters for the hooks the handler keeps as plain functions (``_on_*``).

    A subclass that overrides a hook method keeps its own: it decides where it runs.
    """
    if getattr(handler, "_bokehserve_adapted", False):
        return
    for name in ("on_server_loaded", "on_server_unloaded"):
        if _inherited(handler, LifecycleHandler, name):
            setattr(handler, name, _sync_hook(handler, f"_{name}", name))
    for name in ("on_session_created", "on_session_destroyed"):
        if _inherited(handler, LifecycleHandler, name):
            setattr(handler, name, _session_hook(handler, f"_{name}", app_name))
    handler._bokehserve_adapted = True  # type: ignore[attr-defined]


def _inherited(handler: Any, base: type, name: str) -> bool:
    return getattr(type(handler), name) is getattr(base, name)


def _session_hook(handler: Any, attribute: str, app_name: str) -> Callable[[Any], Any]:
    """bokeh's async ``on_session_created/destroyed(session_context)``: sync hooks in the pool."""
    what = attribute.lstrip("_")

    async def session_hook(session_context: Any) -> None:
        func = getattr(handler, attribute)  # read per call: Panel replaces some after start-up
        if func is _do_nothing:
            return
        if inspect.iscoroutinefunction(func):
            await func(session_context)
            return
        result = await run(app_name, what, func, session_context)
        if inspect.isawaitable(result):
            await result

    return session_hook


def _sync_hook(handler: Any, attribute: str, what: str) -> Callable[[Any], Any]:
    """A hook bokeh calls without awaiting (server hooks, process_request).

    The caller runs it in the pool (sessions.py, views.py), so a sync hook may use the ORM;
    an async one is awaited on the server's loop while the worker thread waits for it.
    """

    def sync_hook(argument: Any) -> Any:
        func = getattr(handler, attribute)
        if func is _do_nothing:
            return None
        if func is _return_empty:
            return {}
        result = func(argument)
        if inspect.isawaitable(result):
            result = wait_from_worker(result, what)
        return result

    return sync_hook


def wait_from_worker(awaitable: Any, what: str) -> Any:
    """Wait for ``awaitable`` (an async hook's) from sync code, running it on the server's loop.

    In a worker thread of the pool, the thread waits while the loop runs it. Called on the
    loop itself (Panel apps' document callbacks run there), it cannot be waited for: it is
    scheduled as a task, its failure logged, and None returned.
    """

    async def wait() -> Any:
        return await awaitable

    loop = _worker.loop
    if loop is not None:
        return asyncio.run_coroutine_threadsafe(wait(), loop).result()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())  # a plain thread (a script, a test): its own loop will do
    running.create_task(wait()).add_done_callback(functools.partial(_log_failure, what))
    return None


def _log_failure(what: str, task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("Error in %s", what, exc_info=task.exception())

"""Lets Bokeh callbacks use the Django ORM (or other blocking code) without stalling the server.

Callbacks (``on_change``, ``on_event``, periodic, timeout, next-tick) run on the server's
event loop, where Django refuses synchronous ORM calls (``SynchronousOnlyOperation``).
Decorate such a callback with ``run_in_thread``::

    from bokehserve_django.callbacks import run_in_thread

    @run_in_thread
    def refresh(attr, old, new):
        rows = list(Measurement.objects.filter(station=new).values_list("t", "value"))
        source.data = {"t": [r[0] for r in rows], "value": [r[1] for r in rows]}

    select.on_change("value", refresh)

The contract (docs/apps.md says the same for users):

- The function runs in a worker thread while the session's document lock is held for its
  whole run; other sessions keep being served, this session's other callbacks and
  incoming changes wait until it returns.
- ``curdoc()`` in it is the session's document.
- A model assignment updates the value at once, in the worker; what the change sets off
  (the models' and the document's ``on_change``/``on_event`` callbacks, ``add_*_callback``
  and ``remove_*_callback`` calls, root and title changes, the patches for the browsers)
  runs on the event loop, with ``curdoc()`` the session's document, and the assignment
  returns once that is done. So the callbacks a change triggers run where Bokeh runs
  them, as if the change had been made in a next-tick callback.
- An exception (in the function or in a callback its changes trigger) is logged with the
  app, the session and the traceback; the session carries on.

How: each document a ``run_in_thread`` callback belongs to gets its change dispatch
(``DocumentCallbackManager.trigger_on_change``, ``notify_event``, ``trigger_event``)
wrapped once; called from a worker thread running such a function, the wrapper hands the
call to the loop with ``call_soon_threadsafe`` and waits for it. The loop is free then:
the next-tick callback holding the lock is only awaiting the worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from bokeh.document.locking import UnlockedDocumentProxy
from bokeh.io import curdoc

from .threads import callback_executor, ensure_curdoc_per_thread

if TYPE_CHECKING:
    from bokeh.document import Document

__all__ = ("run_in_thread",)

logger = logging.getLogger(__name__)

#: The document-change entry points that run callbacks or reach the session (see module docs).
_DISPATCH_METHODS = ("trigger_on_change", "notify_event", "trigger_event")
#: Set on a DocumentCallbackManager once its dispatch methods are wrapped.
_WRAPPED_MARK = "_bokehserve_dispatches_on_loop"
#: How often a worker waiting for the loop checks that the loop still runs (seconds).
_LOOP_CHECK_INTERVAL = 1.0


class _WorkerState(threading.local):
    """What a worker thread running a ``run_in_thread`` function knows: the loop to hand changes to."""

    loop: asyncio.AbstractEventLoop | None = None


_worker = _WorkerState()


def run_in_thread(func: Callable[..., Any]) -> Callable[..., None]:
    """Run the callback ``func`` in a worker thread under the document lock (see module docs)."""
    if inspect.iscoroutinefunction(func):
        raise TypeError(
            f"run_in_thread takes a plain function, and {func.__qualname__} is async; an async "
            "callback already runs on the loop: await sync_to_async(query)() inside it instead."
        )

    @functools.wraps(func)
    def callback(*args: Any, **kwargs: Any) -> None:
        document = curdoc()
        if isinstance(document, UnlockedDocumentProxy):
            # Called from a without_document_lock callback: scheduling a next-tick callback is
            # what such callbacks may do, and the function then runs under the lock.
            document = document._doc
        _dispatch_worker_changes_on_loop(document)

        async def run_locked() -> None:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(callback_executor(), _run_in_worker, loop, document, func, args, kwargs)
            except Exception:
                # Logged rather than raised into the server: the session carries on (as bokeh
                # logs a failing callback and keeps the session).
                app_name, session_id = _where(document)
                logger.error(
                    "run_in_thread callback %s of app %r (session %r) failed",
                    getattr(func, "__qualname__", repr(func)), app_name, session_id, exc_info=True,
                )

        # Next-tick callbacks run under the document lock and are awaited to completion.
        document.add_next_tick_callback(run_locked)

    return callback


def _run_in_worker(
    loop: asyncio.AbstractEventLoop, document: Document, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    from django.db import close_old_connections

    ensure_curdoc_per_thread()
    _worker.loop = loop
    try:
        with _curdoc_is(document):
            return func(*args, **kwargs)
    finally:
        _worker.loop = None
        close_old_connections()


def _dispatch_worker_changes_on_loop(document: Document) -> None:
    """Wrap ``document``'s change dispatch so calls from run_in_thread workers run on the loop (once)."""
    manager = document.callbacks
    if getattr(manager, _WRAPPED_MARK, False):
        return
    document_ref = weakref.ref(document)
    manager_ref = weakref.ref(manager)
    for name in _DISPATCH_METHODS:
        setattr(manager, name, _on_loop_from_workers(getattr(type(manager), name), manager_ref, document_ref))
    setattr(manager, _WRAPPED_MARK, True)


def _on_loop_from_workers(
    function: Callable[..., Any], manager_ref: weakref.ref[Any], document_ref: weakref.ref[Document]
) -> Callable[..., Any]:
    """``function`` (a DocumentCallbackManager method) for the manager, handed to the loop from workers.

    Holds the manager weakly, so the wrappers stored on it add no reference cycle of their own.
    """

    @functools.wraps(function)
    def dispatch(*args: Any, **kwargs: Any) -> Any:
        manager = manager_ref()
        if manager is None:
            return None
        loop = _worker.loop
        if loop is None:
            return function(manager, *args, **kwargs)
        return _call_on_loop(loop, document_ref, functools.partial(function, manager), args, kwargs)

    return dispatch


def _call_on_loop(
    loop: asyncio.AbstractEventLoop,
    document_ref: weakref.ref[Document],
    method: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Run ``method`` on ``loop`` with curdoc() the document, and wait for it (from a worker thread)."""
    outcome: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def call() -> None:
        if not outcome.set_running_or_notify_cancel():
            return
        try:
            document = document_ref()
            if document is None:
                outcome.set_result(None)
                return
            with _curdoc_is(document):
                outcome.set_result(method(*args, **kwargs))
        except BaseException as exc:  # handed back to the worker, which raises it at the assignment
            outcome.set_exception(exc)

    loop.call_soon_threadsafe(call)
    while True:
        done, _ = concurrent.futures.wait([outcome], timeout=_LOOP_CHECK_INTERVAL)
        if done:
            return outcome.result()
        if loop.is_closed() or not loop.is_running():
            outcome.cancel()
            raise RuntimeError("The server's event loop stopped while a run_in_thread callback was changing its document.")


@contextmanager
def _curdoc_is(document: Document) -> Iterator[None]:
    """``curdoc()`` is ``document`` in this thread meanwhile.

    bokeh's ``patch_curdoc`` leaves its entry behind when the body raises; this one always
    restores the thread's stack, so a failing callback cannot leave a stale curdoc().
    """
    import bokeh.io.doc as bokeh_io_doc

    stack = bokeh_io_doc._PATCHED_CURDOCS
    depth = len(stack)
    stack.append(weakref.ref(document))
    try:
        yield
    finally:
        while len(stack) > depth:
            stack.pop()


def _where(document: Document) -> tuple[str | None, str | None]:
    """The app name and session id of ``document``, for log lines (None when unknown)."""
    context = document.session_context
    if context is None:
        return None, None
    app_sessions = getattr(context.server_context, "application_context", None)
    return getattr(app_sessions, "name", None), context.id

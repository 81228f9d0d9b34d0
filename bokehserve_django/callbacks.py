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

The function then runs in a worker thread while the session's document lock is held, so
the document changes it makes are safe and reach the browser as usual, and other sessions
keep being served meanwhile. Inside it, use models from the closure or module rather than
``curdoc()`` (curdoc is not tied to the worker thread).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from bokeh.io import curdoc

from .threads import callback_executor

__all__ = ("run_in_thread",)


def run_in_thread(func: Callable[..., Any]) -> Callable[..., None]:
    """Run the callback ``func`` in a worker thread under the document lock (see module docs)."""

    @functools.wraps(func)
    def callback(*args: Any, **kwargs: Any) -> None:
        document = curdoc()

        async def run_locked() -> None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(callback_executor(), _call_closing_connections, func, args, kwargs)

        # Next-tick callbacks run under the document lock and are awaited to completion.
        document.add_next_tick_callback(run_locked)

    return callback


def _call_closing_connections(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    from django.db import close_old_connections

    try:
        return func(*args, **kwargs)
    finally:
        close_old_connections()

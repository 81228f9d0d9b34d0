"""Owns the worker threads that run app code and blocking callbacks, and makes curdoc() per thread.

App code (building a session's document) runs off the event loop so it may use the Django
ORM and so a slow app does not stall other sessions; ``run_in_thread`` callbacks do the
same for callbacks. No Django or Channels imports.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ("app_code_executor", "callback_executor")

_app_executor: ThreadPoolExecutor | None = None
_callback_executor: ThreadPoolExecutor | None = None


def app_code_executor() -> ThreadPoolExecutor:
    """The thread that runs app code (document creation).

    One thread: bokeh's script handlers patch module-level state (``bokeh.io`` output
    functions) while a script runs, so two scripts must not run at once. The event loop
    stays free meanwhile.
    """
    global _app_executor
    if _app_executor is None:
        _patch_curdoc_per_thread()
        _app_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bokeh-app")
    return _app_executor


def callback_executor() -> ThreadPoolExecutor:
    """The threads that run ``run_in_thread`` callbacks (ORM queries and other blocking code)."""
    global _callback_executor
    if _callback_executor is None:
        _callback_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bokeh-callback")
    return _callback_executor


class _ThreadLocalStack(threading.local):
    """A list per thread, standing in for bokeh's process-wide ``curdoc()`` override stack."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def append(self, item: Any) -> None:
        self.items.append(item)

    def pop(self, *args: Any) -> Any:
        return self.items.pop(*args)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: Any) -> Any:
        return self.items[index]


def _patch_curdoc_per_thread() -> None:
    """Give each thread its own ``curdoc()`` override stack.

    bokeh keeps one list for the process (``bokeh.io.doc._PATCHED_CURDOCS``); app code
    building a document in our worker thread and callbacks running on the event loop
    would otherwise see each other's documents.
    """
    import bokeh.io.doc as bokeh_io_doc

    if not isinstance(bokeh_io_doc._PATCHED_CURDOCS, _ThreadLocalStack):
        bokeh_io_doc._PATCHED_CURDOCS = _ThreadLocalStack()  # type: ignore[assignment]




def ensure_curdoc_per_thread() -> None:
    """Make ``curdoc()`` overrides per thread before code pushes one in a worker thread (idempotent)."""
    _patch_curdoc_per_thread()

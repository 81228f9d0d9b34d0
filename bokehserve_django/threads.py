"""Owns the worker threads that run app code, hooks and blocking callbacks, and makes bokeh's run state per thread.

App code (building a session's document) and sync hooks run off the event loop, in a
bounded pool (``AppCodePool``) with a per-app cap and a time limit, so they may use the
Django ORM and a slow or hung app cannot stall the others. bokeh's code handlers change
process-wide state while a script runs (``curdoc()``, the ``bokeh.io`` output functions,
``sys.argv``, ``sys.path``, the handler's failure flag); ``make_run_state_per_thread()``
makes each of these per thread, so several scripts may run at once. No Django or Channels
imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sys
import threading
import types
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError as FutureCancelled, Future, ThreadPoolExecutor
from typing import Any

__all__ = (
    "AppCodePool",
    "AppCodeTimeout",
    "DaemonThreadPool",
    "RunFailure",
    "callback_executor",
    "default_pool_size",
    "ensure_curdoc_per_thread",
    "late_result",
    "make_run_state_per_thread",
    "run_failure",
    "start_run",
)

_callback_executor: ThreadPoolExecutor | None = None


def callback_executor() -> ThreadPoolExecutor:
    """The threads that run ``run_in_thread`` callbacks (ORM queries and other blocking code)."""
    global _callback_executor
    if _callback_executor is None:
        _callback_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bokeh-callback")
    return _callback_executor


# ---------------------------------------------------------------------------
# The bounded pool for app code and hooks
# ---------------------------------------------------------------------------


def default_pool_size() -> int:
    """Threads for app code when the setting leaves it to the machine: CPUs + 4, at most 32.

    Python's own default for I/O-bound pools: app code mostly waits (the ORM, files, the
    network) or holds the GIL, so more threads than CPUs keep slow apps from queueing the rest.
    """
    return min(32, (os.cpu_count() or 1) + 4)


class DaemonThreadPool:
    """Up to ``size`` daemon threads running submitted calls; ``submit`` returns a Future.

    ThreadPoolExecutor's threads are joined when the interpreter exits, so one hung run of
    app code would keep a stopping server alive until the stop watchdog kills it. Daemon
    threads do not hold the process: a stop ends with the hung run abandoned.
    """

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()

    def submit(self, func: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._queue.put((future, func, args))
        if not self._idle.acquire(timeout=0):
            with self._lock:
                if len(self._threads) < self._size:
                    thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                    thread.start()
                    self._threads.append(thread)
        return future

    def _work(self) -> None:
        while True:
            future, func, args = self._queue.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(func(*args))
                except BaseException as exc:  # handed to the caller, as ThreadPoolExecutor does
                    future.set_exception(exc)
            del future, func, args
            self._idle.release()


class AppCodeTimeout(TimeoutError):
    """Raised when a run of an app's code or hook did not finish within the pool's time limit.

    ``running`` says whether it had started: a run that had is still going in its thread
    (Python cannot stop a thread) and counts against the caps until it ends.
    """

    def __init__(self, app_name: str, what: str, limit: float, running: bool) -> None:
        state = "still runs in its thread" if running else "never started (the app's threads were all busy)"
        super().__init__(f"{what} of app {app_name!r} did not finish within {limit:g} s; it {state}")
        self.app_name = app_name
        self.what = what
        self.limit = limit
        self.running = running


class AppCodePool:
    """Runs app code in at most ``size`` threads, at most ``per_app`` of them for any one app.

    A run waits (on the loop, holding no thread) while its app has ``per_app`` runs going,
    so one slow app can fill only its own share. ``timeout`` seconds (0: none) bound the
    wait and the run together; past it the caller gets AppCodeTimeout. A run that had
    started keeps its thread and its app's share until it ends, since a thread cannot be
    killed; ``on_late_result`` then receives its result (or exception) on the loop.
    Admission is per event loop: make one pool per loop.
    """

    def __init__(self, size: int, per_app: int, timeout: float, threads: DaemonThreadPool | None = None) -> None:
        if size < 1 or per_app < 1:
            raise ValueError(f"a pool needs at least one thread, and one per app (got {size}, {per_app})")
        self.size = size
        self.per_app = min(per_app, size)
        self.timeout = timeout
        self._threads = threads or DaemonThreadPool(size, "bokeh-app")
        self._slots: dict[str, asyncio.Semaphore] = {}
        #: Runs admitted per app and not yet ended (timed-out ones included).
        self._busy: dict[str, int] = {}

    def busy(self, app_name: str) -> int:
        """Runs of ``app_name`` holding a thread or queued for one (timed-out runs included)."""
        return self._busy.get(app_name, 0)

    @property
    def saturated(self) -> bool:
        """Whether every thread is taken (timed-out runs included): a new run would wait for one."""
        return sum(self._busy.values()) >= self.size

    async def run(
        self,
        app_name: str,
        what: str,
        func: Callable[..., Any],
        *args: Any,
        on_late_result: Callable[[Future[Any]], None] | None = None,
    ) -> Any:
        """``func(*args)`` in a thread of the pool, counted against ``app_name``'s share."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout if self.timeout else None
        slot = self._slots.setdefault(app_name, asyncio.Semaphore(self.per_app))
        try:
            async with asyncio.timeout_at(deadline):
                await slot.acquire()
        except TimeoutError:
            raise AppCodeTimeout(app_name, what, self.timeout, running=False) from None
        self._busy[app_name] = self._busy.get(app_name, 0) + 1
        job = self._threads.submit(func, *args)

        def release(_: Future[Any]) -> None:
            self._busy[app_name] -= 1
            slot.release()

        job.add_done_callback(lambda done: _call_on_loop(loop, release, done))
        try:
            async with asyncio.timeout_at(deadline):
                return await asyncio.wrap_future(job)
        except TimeoutError:
            running = not job.cancel()  # cancel() fails once the thread has started it
            if running and on_late_result is not None:
                job.add_done_callback(lambda done: _call_on_loop(loop, on_late_result, done))
            raise AppCodeTimeout(app_name, what, self.timeout, running=running) from None


def _call_on_loop(loop: asyncio.AbstractEventLoop, func: Callable[[Future[Any]], None], done: Future[Any]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nothing is waiting any more
        loop.call_soon_threadsafe(func, done)


def late_result(done: Future[Any]) -> Any:
    """The result of a run that ended after its time limit (None if it was cancelled)."""
    try:
        return done.result()
    except FutureCancelled:
        return None


# ---------------------------------------------------------------------------
# bokeh's process-wide run state, made per thread
# ---------------------------------------------------------------------------


class RunFailure:
    """Why this thread's last run of app code failed: bokeh's error line and its traceback."""

    def __init__(self, error: str, detail: str) -> None:
        self.error = error
        self.detail = detail


class _ThisThread(threading.local):
    def __init__(self) -> None:
        self.failure: RunFailure | None = None
        self.io_loggers: dict[str, Callable[..., None]] | None = None
        self.argv: list[str] | None = None


_this_thread = _ThisThread()
_state_lock = threading.Lock()
_patched = False


def start_run() -> None:
    """Forget this thread's previous failure: call before running an app's handlers."""
    _this_thread.failure = None


def run_failure() -> RunFailure | None:
    """How the handlers run in this thread since ``start_run()`` failed, if they did.

    bokeh keeps a failure on the handler, which every session of the app shares; another
    session's run could set or reset it before this one is checked. This is this run's own.
    """
    return _this_thread.failure


def make_run_state_per_thread() -> None:
    """Patch bokeh (and Panel, if loaded) once so that concurrent runs of app code do not meet.

    - ``curdoc()``: one override stack per thread (bokeh keeps one for the process);
    - ``bokeh.io.show`` and the other output functions: bokeh swaps them for loggers while a
      script runs and swaps them back after, which two overlapping runs would leave crossed;
      they are replaced once by functions that call this thread's logger during a run, and
      bokeh's own function otherwise;
    - ``sys.argv``: each run sees its own ``[script, *args]``; other threads see the process's;
    - ``sys.path``: the script's directory stays on it while any run of it is going (bokeh
      inserts it and restores a copy of the list, which would drop a directory another
      run still imports from);
    - failures: recorded for the run that failed (``run_failure()``), as well as on the handler.
    """
    global _patched
    with _state_lock:
        if not _patched:
            ensure_curdoc_per_thread()
            _patch_io_functions()
            _patch_code_runner()
            _patch_failure_recording()
            _patched = True
        _patch_panel_if_loaded()


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


def ensure_curdoc_per_thread() -> None:
    """Make ``curdoc()`` overrides per thread before code pushes one in a worker thread (idempotent)."""
    import bokeh.io.doc as bokeh_io_doc

    if not isinstance(bokeh_io_doc._PATCHED_CURDOCS, _ThreadLocalStack):
        bokeh_io_doc._PATCHED_CURDOCS = _ThreadLocalStack()  # type: ignore[assignment]


def _patch_io_functions() -> None:
    import bokeh.application.handlers.code as code_module
    import bokeh.io as io

    for name in code_module.CodeHandler._io_functions:
        original = getattr(io, name)
        setattr(io, name, _io_dispatcher(name, original))
    code_module._monkeypatch_io = _io_loggers_for_this_thread  # type: ignore[assignment]


def _io_dispatcher(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def dispatch(*args: Any, **kwargs: Any) -> Any:
        loggers = _this_thread.io_loggers
        if loggers is not None and name in loggers:
            return loggers[name](*args, **kwargs)
        return original(*args, **kwargs)

    dispatch.__name__ = name
    dispatch.__doc__ = original.__doc__
    dispatch.__wrapped__ = original  # type: ignore[attr-defined]
    return dispatch


@contextlib.contextmanager
def _io_loggers_for_this_thread(loggers: dict[str, Callable[..., None]] | None) -> Iterator[None]:
    """What bokeh's ``_monkeypatch_io(loggers)`` does, for this thread only."""
    previous, _this_thread.io_loggers = _this_thread.io_loggers, loggers
    try:
        yield
    finally:
        _this_thread.io_loggers = previous


class _ArgvPerThread(list):
    """``sys.argv``: during a run of app code, the run's ``[script, *args]``; the process's otherwise.

    The list itself holds the process's arguments, so C code reading it directly sees those.
    """

    def _current(self) -> list[str]:
        argv = _this_thread.argv
        return argv if argv is not None else list.__getitem__(self, slice(None))

    def __getitem__(self, index: Any) -> Any:
        return self._current()[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())

    def __contains__(self, item: object) -> bool:
        return item in self._current()

    def __eq__(self, other: object) -> bool:
        return self._current() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._current())

    def __reversed__(self) -> Iterator[str]:
        return reversed(self._current())

    def __add__(self, other: Any) -> list[str]:
        return self._current() + list(other)

    def copy(self) -> list[str]:
        return list(self._current())

    def index(self, *args: Any) -> int:
        return self._current().index(*args)

    def count(self, item: Any) -> int:
        return self._current().count(item)


class _SharedSysPath:
    """Directories of scripts being run, on ``sys.path`` while at least one run needs them."""

    def __init__(self) -> None:
        self._users: dict[str, int] = {}
        #: Directories this put on sys.path (one already first there is left alone).
        self._inserted: set[str] = set()
        self._cwd_users = 0
        self._cwd = ""

    @contextlib.contextmanager
    def entered(self, directory: str) -> Iterator[None]:
        with _state_lock:
            if not isinstance(sys.argv, _ArgvPerThread):
                sys.argv = _ArgvPerThread(sys.argv)
            if self._users.get(directory, 0) == 0 and (not sys.path or sys.path[0] != directory):
                sys.path.insert(0, directory)
                self._inserted.add(directory)
            self._users[directory] = self._users.get(directory, 0) + 1
            if self._cwd_users == 0:
                self._cwd = os.getcwd()
            self._cwd_users += 1
        try:
            yield
        finally:
            with _state_lock:
                self._users[directory] -= 1
                if self._users[directory] == 0:
                    del self._users[directory]
                    if directory in self._inserted:
                        self._inserted.discard(directory)
                        with contextlib.suppress(ValueError):
                            sys.path.remove(directory)
                self._cwd_users -= 1
                if self._cwd_users == 0:
                    # As bokeh does after a run: a script that changed directory changes it back.
                    with contextlib.suppress(OSError):
                        os.chdir(self._cwd)


_sys_path = _SharedSysPath()


def _patch_code_runner() -> None:
    from bokeh.application.handlers.code_runner import CodeRunner

    CodeRunner.run = _thread_safe_run(lambda runner, module, exc: _record_failure(runner, exc))  # type: ignore[method-assign]


def _thread_safe_run(record: Callable[[Any, Any, Exception], None]) -> Callable[..., None]:
    """A ``CodeRunner.run`` that keeps argv, sys.path and the failure to this run (see above).

    Runs the compiled source in ``module`` with ``sys.argv`` set to the script's name and
    arguments and its directory on ``sys.path``, then ``post_check``; an exception is
    recorded with ``record(runner, module, exc)``.
    """

    def run(self: Any, module: types.ModuleType, post_check: Callable[[], None] | None = None) -> None:
        assert self._code is not None
        previous_argv = _this_thread.argv
        with _sys_path.entered(os.path.dirname(self._path)):
            _this_thread.argv = [os.path.basename(self._path), *self._argv]
            try:
                exec(self._code, module.__dict__)
                if post_check:
                    post_check()
            except Exception as exc:
                record(self, module, exc)
            finally:
                _this_thread.argv = previous_argv
                self.ran = True

    return run


_bokeh_handle_exception: Callable[[Any, Exception], None] | None = None


def _record_failure(handler: Any, exc: Exception) -> None:
    """bokeh's ``handle_exception``, also recorded as this thread's run failure.

    Called in the ``except`` block, as bokeh's is (it formats the current exception).
    """
    assert _bokeh_handle_exception is not None
    details = types.SimpleNamespace()
    _bokeh_handle_exception(details, exc)
    handler._failed, handler._error, handler._error_detail = True, details._error, details._error_detail
    _this_thread.failure = RunFailure(details._error, details._error_detail)


def _patch_failure_recording() -> None:
    global _bokeh_handle_exception
    import bokeh.application.handlers.function as function_module
    import bokeh.application.handlers.handler as handler_module

    _bokeh_handle_exception = handler_module.handle_exception
    function_module.handle_exception = _record_failure  # type: ignore[assignment]


def _patch_panel_if_loaded() -> None:
    """Panel's code runner is a copy of bokeh's with its own exception hook: patch it alike."""
    handlers = sys.modules.get("panel.io.handlers")
    if handlers is None or getattr(handlers, "_bokehserve_patched", False):
        return
    autoreload_handle_exception = handlers.autoreload_handle_exception
    handlers.PanelCodeRunner.run = _thread_safe_run(autoreload_handle_exception)
    handlers.handle_exception = _record_failure
    handlers._monkeypatch_io = _io_loggers_for_this_thread
    handlers._bokehserve_patched = True

"""The app-code pool (shares, time limit, late runs) and bokeh's run state made per thread (argv, sys.path, io, failures)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bokeh.io
import pytest
from bokeh.application.handlers.script import ScriptHandler
from bokeh.document import Document
from django.core.exceptions import ImproperlyConfigured

from bokehserve_django import threads
from bokehserve_django.conf import bokeh_settings
from bokehserve_django.threads import (
    AppCodePool,
    AppCodeTimeout,
    make_run_state_per_thread,
    run_failure,
    start_run,
)

#: Script runs in the tests below meet here, so that they are sure to overlap.
BARRIER: threading.Barrier | None = None
#: What each script run saw while the others were running too, by script name.
SEEN: dict[str, dict[str, object]] = {}

SCRIPT = """
import sys
import bokeh.io
from bokeh.io import curdoc
import tests.unit.test_threads as t

t.BARRIER.wait(10)
t.SEEN[{name!r}] = {{"argv": list(sys.argv), "path_has_dir": {directory!r} in sys.path, "show": bokeh.io.show}}
bokeh.io.show(None)  # a logger while the script runs, as under bokeh serve: no browser opens
t.BARRIER.wait(10)
if curdoc().title == "fail":
    raise RuntimeError("failing on purpose for " + {name!r})
"""


def script_handler(directory: Path, name: str, argv: list[str]) -> ScriptHandler:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    path.write_text(SCRIPT.format(name=name, directory=str(directory)))
    return ScriptHandler(filename=str(path), argv=argv)


def run_handler(handler: ScriptHandler, title: str):
    """One run as the session runtime does it: in a worker thread, failure checked inside the run."""
    document = Document()
    document.title = title
    start_run()
    handler.modify_document(document)
    return run_failure()


class TestConcurrentScriptRuns:
    def test_overlapping_runs_see_their_own_argv_path_and_io(self, tmp_path) -> None:
        global BARRIER
        make_run_state_per_thread()
        argv_before, path_before, show_before = list(sys.argv), list(sys.path), bokeh.io.show
        one = script_handler(tmp_path / "one", "one", ["--x", "1"])
        two = script_handler(tmp_path / "two", "two", ["--y"])
        BARRIER = threading.Barrier(2)
        SEEN.clear()
        with ThreadPoolExecutor(2) as pool:
            failures = list(pool.map(run_handler, [one, two], ["ok", "ok"]))
        assert failures == [None, None]
        assert SEEN["one"]["argv"] == ["one.py", "--x", "1"]
        assert SEEN["two"]["argv"] == ["two.py", "--y"]
        assert SEEN["one"]["path_has_dir"] and SEEN["two"]["path_has_dir"]
        # Afterwards the process is as it was: no directory left behind, argv and io restored.
        assert list(sys.argv) == argv_before
        assert sys.path == path_before
        assert bokeh.io.show is show_before
        assert bokeh.io.show.__wrapped__.__module__ == "bokeh.io.showing"

    def test_a_failure_is_the_failing_runs_own(self, tmp_path) -> None:
        """Two sessions of one app at once, one failing: each run's check sees only its own outcome.

        bokeh keeps the failure on the handler that both share: read after the run, as the
        session runtime once did, the succeeding session could see the other's failure (or
        the failing one none, once the next run reset it).
        """
        global BARRIER
        make_run_state_per_thread()
        shared = script_handler(tmp_path / "shared", "shared", [])
        BARRIER = threading.Barrier(2)
        with ThreadPoolExecutor(2) as pool:
            failed, succeeded = pool.map(run_handler, [shared, shared], ["fail", "ok"])
        assert failed is not None and "failing on purpose for shared" in failed.error
        assert "RuntimeError" in failed.detail
        assert succeeded is None


def blocker(release: threading.Event, started: list[str], name: str) -> str:
    started.append(name)
    assert release.wait(10)
    return name


class TestAppCodePool:
    async def test_an_app_holds_at_most_its_share_and_the_others_still_run(self) -> None:
        pool = AppCodePool(size=4, per_app=2, timeout=10)
        release, started = threading.Event(), []
        slow = [asyncio.create_task(pool.run("slow", "code", blocker, release, started, f"slow{i}")) for i in range(5)]
        await asyncio.sleep(0.3)
        assert sorted(started) == ["slow0", "slow1"]
        assert pool.busy("slow") == 2
        # Another app gets a thread at once, although five of the slow app's runs are waiting or running.
        other_release = threading.Event()
        other_release.set()
        assert await asyncio.wait_for(pool.run("other", "code", blocker, other_release, started, "other"), 2) == "other"
        release.set()
        assert sorted(await asyncio.gather(*slow)) == [f"slow{i}" for i in range(5)]
        assert pool.busy("slow") == 0

    async def test_a_run_past_the_limit_is_refused_and_its_result_arrives_late(self) -> None:
        pool = AppCodePool(size=2, per_app=1, timeout=0.3)
        release, started, late = threading.Event(), [], asyncio.Event()
        results = []

        def on_late_result(done) -> None:
            results.append(threads.late_result(done))
            late.set()

        with pytest.raises(AppCodeTimeout) as timed_out:
            await pool.run("hung", "The app code", blocker, release, started, "first", on_late_result=on_late_result)
        assert timed_out.value.running
        assert "did not finish within 0.3 s; it still runs in its thread" in str(timed_out.value)
        # The hung run still holds the app's only thread: the next run waits, then gives up unstarted.
        with pytest.raises(AppCodeTimeout) as queued:
            await pool.run("hung", "The app code", blocker, release, started, "second")
        assert not queued.value.running
        assert started == ["first"]
        release.set()
        await asyncio.wait_for(late.wait(), 5)
        assert results == ["first"]
        await asyncio.sleep(0.05)
        assert pool.busy("hung") == 0

    def test_a_pool_needs_threads(self) -> None:
        with pytest.raises(ValueError, match="at least one thread"):
            AppCodePool(size=0, per_app=1, timeout=1)

    def test_daemon_threads_do_not_hold_the_process(self) -> None:
        release = threading.Event()
        daemon_pool = threads.DaemonThreadPool(1, "test-daemon")
        daemon_pool.submit(release.wait, 5)
        assert [t.daemon for t in threading.enumerate() if t.name.startswith("test-daemon")] == [True]
        release.set()


class TestSettings:
    def test_defaults_size_the_pool_to_the_machine(self, settings) -> None:
        settings.BOKEHSERVE = {}
        assert bokeh_settings.APP_CODE_THREADS is None
        assert threads.default_pool_size() == min(32, (os.cpu_count() or 1) + 4)
        assert bokeh_settings.APP_CODE_TIMEOUT == 60

    @pytest.mark.parametrize(
        ("key", "value", "words"),
        [
            ("APP_CODE_THREADS", 0, "a positive number of threads"),
            ("APP_CODE_THREADS_PER_APP", "2", "a positive number of threads"),
            ("APP_CODE_TIMEOUT", -1, "a non-negative number of seconds"),
            ("APP_CODE_TIMEOUT", True, "a non-negative number of seconds"),
        ],
    )
    def test_bad_values_are_refused_with_what_to_give(self, settings, key, value, words) -> None:
        settings.BOKEHSERVE = {key: value}
        with pytest.raises(ImproperlyConfigured, match=f"BOKEHSERVE\\['{key}'\\] must be {words}"):
            getattr(bokeh_settings, key)

"""Fixtures of the integration tests: one runbokeh process for the folder, the in-process session
runtime shut down after a test, and the database of tests/hooks_settings.py, migrated once per run."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bokehserve_django.sessions import runtime
from tests.integration.hooks_db import migrate
from tests.live import LiveServer


@pytest.fixture(scope="package")
def server() -> Iterator[LiveServer]:
    """One runbokeh process serving tests/settings.py's apps, shared by the modules of this folder.

    A start and a stop cost seconds of CPU (Django, Bokeh and their imports, then the
    interpreter's teardown), so the modules that only need a healthy server share one. A test
    that looks at the log reads what was written during the test (``len(server.log)`` first),
    and tests that change a server's state (stop it, drain it, other flags) start their own.
    """
    live = LiveServer()
    yield live
    live.stop()


@pytest.fixture
async def fresh_runtime():
    """The process-global session runtime, shut down after the test (it is bound to this test's loop)."""
    yield runtime
    await runtime.shutdown()


@pytest.fixture(scope="session")
def migrated_hooks_db(tmp_path_factory) -> Path:
    """tests.hooks_settings' database, migrated; tests take copies (``hooks_db``).

    ``manage.py migrate`` is a Django start plus every migration: seconds, tens of seconds on a
    loaded machine, for the same schema every time. So it runs once per test run.
    """
    database = tmp_path_factory.mktemp("hooks-db") / "migrated.sqlite3"
    migrate(database)
    return database


@pytest.fixture
def hooks_db(migrated_hooks_db: Path, tmp_path: Path) -> Path:
    """This test's own copy of the migrated database (its servers write to it)."""
    database = tmp_path / "hooks.sqlite3"
    shutil.copyfile(migrated_hooks_db, database)
    return database

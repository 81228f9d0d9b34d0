"""Fixtures of the integration tests: the database of tests/hooks_settings.py, migrated once per run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.integration.hooks_db import migrate


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

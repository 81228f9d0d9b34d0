"""The database of tests/hooks_settings.py (hook and app-code-pool tests): migrated once, copied per test."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.live import ROOT

SETTINGS = "tests.hooks_settings"


def migrate(database: Path) -> None:
    """Create ``database`` with tests.hooks_settings' tables and one user, carol."""
    env = {**os.environ, **env_for(database)}
    env.pop("BOKEHSERVE_RUN_OVERRIDES", None)
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--settings", SETTINGS, "-v", "0"],
                   cwd=ROOT, env=env, check=True, timeout=120)
    db = sqlite3.connect(database)
    try:
        with db:
            db.execute("INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,"
                       " is_staff, is_active, date_joined) VALUES ('', 0, 'carol', '', '', '', 0, 1, '2026-01-01')")
    finally:
        db.close()


def env_for(database: Path) -> dict[str, str]:
    """The environment that points a tests.hooks_settings server at ``database``."""
    return {"BOKEHSERVE_TEST_DB": str(database)}

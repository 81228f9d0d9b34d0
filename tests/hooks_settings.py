"""Settings for the hook and app-code-pool tests: tests/settings.py with their apps and a database of their own.

``BOKEHSERVE_TEST_DB`` names the SQLite file (each test gets its own copy of one
migrated database: the ``hooks_db`` fixture of tests/integration/conftest.py); ``BOKEHSERVE_TEST_APP_CODE``
("threads,per_app,timeout") sizes the app-code pool and ``BOKEHSERVE_TEST_SESSION_LIFETIME`` (ms)
sets UNUSED_SESSION_LIFETIME, so one settings module serves every test.
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import BOKEHSERVE, TEST_APPS

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BOKEHSERVE_TEST_DB", "/tmp/bokehserve-hooks-test.sqlite3"),
        # Hooks of several sessions write at once: wait for the lock rather than fail.
        "OPTIONS": {"timeout": 20},
    }
}

_threads, _per_app, _timeout = os.environ.get("BOKEHSERVE_TEST_APP_CODE", "6,3,60").split(",")

BOKEHSERVE = {
    **BOKEHSERVE,
    "APPS": {
        "echo": TEST_APPS / "echo.py",
        "orm_hooks": TEST_APPS / "orm_hooks",
        "orm_hooks_async": TEST_APPS / "orm_hooks_async",
        "guide_layout": TEST_APPS / "guide_layout",
        "slow": TEST_APPS / "slow.py",
        "hangs": TEST_APPS / "hangs.py",
    },
    "APP_CODE_THREADS": int(_threads),
    "APP_CODE_THREADS_PER_APP": int(_per_app),
    "APP_CODE_TIMEOUT": float(_timeout),
    "UNUSED_SESSION_LIFETIME": int(os.environ.get("BOKEHSERVE_TEST_SESSION_LIFETIME", "15000")),
    "CHECK_UNUSED_SESSIONS": min(17_000, int(os.environ.get("BOKEHSERVE_TEST_SESSION_LIFETIME", "15000")) // 2),
}

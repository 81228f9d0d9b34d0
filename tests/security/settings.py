"""Settings for the security tests: apps behind every kind of access policy, signed sessions.

Used in-process (the ``security_settings`` fixture copies BOKEHSERVE and ROOT_URLCONF onto
tests.settings) and by live servers: ``LiveServer(settings="tests.security.settings")``.
"""

from tests.settings import *  # noqa: F403
from tests.settings import TEST_APPS

ROOT_URLCONF = "tests.security.urls"
LOGIN_URL = "/accounts/login/"
LOGOUT_REDIRECT_URL = "/public"

#: url name -> access policy; each of these apps serves tests/apps/echo.py. "hooks" (public)
#: and "hooks_login" serve tests/apps/hooks, which records lifecycle calls to
#: $BOKEHSERVE_TEST_HOOK_LOG.
POLICIES = {
    "public": "public",
    "login": "login",
    "perm": {"permissions": ["auth.view_user"]},
    "group": {"groups": ["analysts"]},
    "callable": "tests.security.policies.alice_only",
}

BOKEHSERVE = {
    "APPS": {
        **{name: {"app": TEST_APPS / "echo.py", "access": policy} for name, policy in POLICIES.items()},
        "echo": TEST_APPS / "echo.py",
        "hooks": TEST_APPS / "hooks",
        "hooks_login": {"app": TEST_APPS / "hooks", "access": "login"},
        # No binary buffers in its document (echo.py has a numpy column): for reconnect tests,
        # since BokehJS 3.9 fails to re-pull a document with buffers after a reconnect.
        "whoami_login": {"app": TEST_APPS / "whoami.py", "access": "login"},
    },
    "SIGN_SESSIONS": True,
}

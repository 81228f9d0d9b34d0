"""The hooks of tests/apps/hooks: "<event> <pid> <session id>" lines in $BOKEHSERVE_TEST_HOOK_LOG."""

from tests.apps.hooks.app_hooks import (  # noqa: F401
    on_server_loaded,
    on_server_unloaded,
    on_session_created,
    on_session_destroyed,
)

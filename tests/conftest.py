"""Shared fixtures: DB connections of the async thread closed, runbokeh's flags undone after each test."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _close_connections_of_the_async_thread():
    """Close DB connections a test left in asgiref's thread-sensitive thread.

    Channels' consumers check old connections there on every message; a connection left
    open by an earlier test (with database access) would then trip pytest-django's guard
    in a later test without it.
    """
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)


@pytest.fixture(autouse=True)
def _restore_run_overrides():
    """runbokeh (called in-process by some tests) leaves its flags in the environment: undo that."""
    import os

    from bokehserve_django import registry
    from bokehserve_django.conf import OVERRIDES_ENV, bokeh_settings

    before = os.environ.get(OVERRIDES_ENV)
    yield
    if os.environ.get(OVERRIDES_ENV) != before:
        if before is None:
            os.environ.pop(OVERRIDES_ENV, None)
        else:
            os.environ[OVERRIDES_ENV] = before
        bokeh_settings.reload()
        registry.reset()

"""Shared fixtures: a runbokeh process per module, settings overrides, a fresh session runtime."""

from __future__ import annotations

import pytest

from tests.live import LiveServer


@pytest.fixture(scope="module")
def server():
    """One runbokeh process serving tests/settings.py's apps, for the whole test module."""
    live = LiveServer()
    yield live
    live.stop()

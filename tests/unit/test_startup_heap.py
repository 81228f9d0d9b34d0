"""A serving process freezes its start-up heap, so collections during session opens skip it,
and collects young objects less often than CPython's default."""

from __future__ import annotations

import gc
import weakref

import pytest

from bokehserve_django import sessions


class _Node:
    pass


def test_start_up_garbage_is_collected_and_what_is_alive_is_frozen() -> None:
    frozen_before = gc.get_freeze_count()
    garbage = _Node()
    garbage.self = garbage  # a cycle: only a collection frees it, never reference counting
    garbage_ref = weakref.ref(garbage)
    del garbage
    try:
        sessions.freeze_startup_heap()
        assert garbage_ref() is None  # collected before the freeze, not kept forever
        assert gc.get_freeze_count() > frozen_before  # what was alive is out of the collector's reach
    finally:
        gc.unfreeze()


def test_the_young_threshold_is_raised_from_cpythons_default_only() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(sessions.CPYTHON_YOUNG_THRESHOLD, 10, 10)
        assert sessions.raise_young_collection_threshold() is True
        assert gc.get_threshold() == (sessions.SERVING_YOUNG_THRESHOLD, 10, 10)
        gc.set_threshold(2000, 15, 20)  # a site's own choice
        assert sessions.raise_young_collection_threshold() is False
        assert gc.get_threshold() == (2000, 15, 20)
    finally:
        gc.set_threshold(*before)


@pytest.mark.asyncio
async def test_the_runtime_freezes_the_heap_and_raises_the_threshold_once_when_it_starts(monkeypatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(sessions, "freeze_startup_heap", lambda: calls.append("freeze"))
    monkeypatch.setattr(sessions, "raise_young_collection_threshold", lambda: calls.append("threshold"))
    runtime = sessions.SessionRuntime()
    try:
        runtime.ensure_started()
        runtime.ensure_started()
        assert calls == ["freeze", "threshold"]
    finally:
        await runtime.shutdown()

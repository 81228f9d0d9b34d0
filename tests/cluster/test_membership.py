"""The heartbeat thread against a real redis-server: liveness that a blocked loop cannot fake,
records re-registered after Redis loses them, fencing when a process was taken for dead.

Each test starts its own redis-server and this process's membership on it (no runbokeh), so
Redis can be flushed or killed without disturbing the shared cluster.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import threading
import time

import pytest
import redis as redis_sync

from bokehserve_django.cluster.membership import ALIVE_TTL, Membership, alive_key, owner_key
from tests.cluster.helpers import RedisServer

pytestmark = pytest.mark.redis

# The package exports the Membership instance under the module's own name.
membership_module = importlib.import_module("bokehserve_django.cluster.membership")


@pytest.fixture
def own_redis(tmp_path, settings, monkeypatch):
    server = RedisServer(tmp_path / "redis")
    monkeypatch.setenv("REDIS_URL", server.url)  # tests.cluster.settings reads it on import
    from tests.cluster.settings import channel_layers

    settings.CHANNEL_LAYERS = channel_layers(server.url)
    yield server
    server.stop()


@pytest.fixture
async def member(own_redis):
    member = Membership()
    events: list[str] = []

    async def record(event, data):
        events.append(event)

    member.on_event(record)
    await member.start()
    await _until(lambda: member.connected, 5, "the first heartbeat")
    member.events = events
    yield member
    await member.stop()


async def _until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {seconds} s")
        await asyncio.sleep(0.05)


async def test_a_blocked_event_loop_does_not_make_the_process_look_dead(member, own_redis) -> None:
    client = redis_sync.Redis.from_url(own_redis.url)
    key = alive_key(member.process_channel)
    seen: list[bool] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(bool(client.exists(key)))
            stop.wait(0.25)

    watcher = threading.Thread(target=watch)
    watcher.start()
    time.sleep(ALIVE_TTL + 3)  # what a slow callback does: block the loop, here for 8 s
    stop.set()
    watcher.join()
    assert len(seen) > 20 and all(seen), f"the liveness key lapsed while the loop was blocked: {seen}"


async def test_records_come_back_after_redis_loses_its_data(member, own_redis) -> None:
    key = owner_key("echo", "session-1")
    assert await member.claim(key)
    own_redis.command("FLUSHALL")
    await _until(lambda: "restarted" in member.events, 5, "'restarted' event")
    assert await member.owner_of(key) == member.process_channel
    assert not await member.claim(key), "a re-registered record was claimable again"


async def test_redis_down_and_back_is_two_events_and_rejoins(member, own_redis) -> None:
    os.kill(own_redis.process.pid, signal.SIGKILL)
    own_redis.process.wait(5)
    await _until(lambda: member.known_down, 5, "'down' state")
    assert member.events[-1] == "down"
    own_redis.start()
    # A SIGKILLed Redis without persistence comes back empty: the process says "restarted".
    await _until(lambda: member.connected, 10, "reconnection")
    assert member.events[-1] in ("up", "restarted")
    assert member.events.count("down") == 1, member.events
    key = owner_key("echo", "session-2")
    assert await member.claim(key)


async def test_a_process_that_was_taken_for_dead_is_told_so(member, own_redis) -> None:
    """Its liveness key vanished (frozen longer than its TTL, or cut off from Redis): fencing."""
    client = redis_sync.Redis.from_url(own_redis.url)
    client.delete(alive_key(member.process_channel))
    await _until(lambda: "fenced" in member.events, 5, "'fenced' event")


async def test_releasing_never_removes_a_newer_owners_record(member, own_redis) -> None:
    key = owner_key("echo", "session-3")
    assert await member.claim(key)
    client = redis_sync.Redis.from_url(own_redis.url)
    client.set(key, "specific.other!newer")
    await member.release(key)
    assert client.get(key) == b"specific.other!newer"


async def test_records_of_a_silent_process_are_cleaned_up(member, own_redis, monkeypatch) -> None:
    monkeypatch.setattr(membership_module, "DEAD_AFTER", 0)
    monkeypatch.setattr(membership_module, "CLEANUP_EVERY", 1)
    dead = Membership()
    dead.process_channel = "specific.dead!process"
    dead._url = own_redis.url
    dead.started = True
    import redis.asyncio as aioredis

    dead.redis = aioredis.Redis.from_url(own_redis.url)
    key = owner_key("echo", "session-of-the-dead")
    assert await dead.claim(key)
    client = redis_sync.Redis.from_url(own_redis.url)
    client.hset(membership_module.PROCESSES_KEY, dead.process_channel, '{"beat": 0, "pid": 1, "host": "x"}')
    await _until(lambda: client.get(key) is None, 5, "clean-up of the dead process's record")
    assert not client.hexists(membership_module.PROCESSES_KEY, dead.process_channel)
    await dead.redis.aclose()

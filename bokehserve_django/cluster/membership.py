"""Keeps this process's place in the cluster: its channel, its liveness, and its session records.

Every process has a channel on the channel layer. With channels_redis, each session belongs
to the process that created it (its *owner*), recorded in Redis under
``bokehserve:owner:<hash>``; a process's records are also listed in its set
``bokehserve:owned:<channel>`` so that they can be re-registered after a Redis restart and
cleaned up after the process dies.

Liveness comes from a thread, not from the event loop: Bokeh callbacks run on the loop and
may block it for seconds, and a stall is not a death. The heartbeat thread refreshes
``bokehserve:alive:<channel>`` (a few seconds' TTL) and this process's entry in the
``bokehserve:processes`` hash, one pipeline per second whatever the number of sessions.
It also notices, and reports to the loop as events:

- ``down`` / ``up``: Redis became unreachable / reachable again (one log line each);
- ``restarted``: Redis lost its data (its "up since" stamp changed); the thread has
  re-registered this process's records, and ``data["lost"]`` lists the ones another
  process claimed meanwhile;
- ``fenced``: this process's liveness key had lapsed (the whole process was frozen for
  longer than its TTL), so peers may have taken its sessions over.

Nothing here raises because Redis is down: Django pages never depend on it. Callers that
need Redis (placement) check ``known_down`` and get ``ClusterUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from django.conf import settings

__all__ = ("BROADCAST_GROUP", "Membership", "membership", "redis_host", "write_shared")

logger = logging.getLogger(__name__)

#: Group every process joins to receive broadcasts and sign-outs.
BROADCAST_GROUP = "bokehserve.broadcast"
#: Seconds between heartbeats, and seconds a liveness key lives without one. A process is
#: taken for dead once its key has expired: within ALIVE_TTL + HEARTBEAT_INTERVAL.
HEARTBEAT_INTERVAL = 1.0
ALIVE_TTL = 5
#: Seconds without a heartbeat after which peers delete a process's records for good.
DEAD_AFTER = 30
#: Heartbeats between two looks for dead processes to clean up.
CLEANUP_EVERY = 10
#: Seconds an owner record lives at most: a safety net should a dead process's records
#: never be cleaned up (live owners' records are re-written after a Redis restart).
OWNER_RECORD_TTL = 24 * 3600
#: Seconds after a Redis (re)start during which a missing record may only mean that its
#: owner has not re-registered yet (a few heartbeats).
RESTART_SETTLE = 2.5 * HEARTBEAT_INTERVAL
#: Longest pause between two heartbeat attempts while Redis is down. Short: when Redis
#: comes back, every process must re-register within RESTART_SETTLE, before peers may
#: take a missing record for a new session. One cheap attempt a second per process.
MAX_RETRY_INTERVAL = 1.0
#: Longest pause between two receive attempts of the channel-layer listener while it fails
#: (the heartbeat wakes it as soon as Redis is back).
MAX_RECEIVE_RETRY_INTERVAL = 5.0
#: Seconds between re-joins of the broadcast group (channels_redis expires memberships).
GROUP_REJOIN_INTERVAL = 30.0
#: Seconds any one Redis command may take before it counts as a failure.
REDIS_TIMEOUT = 2.0

SINCE_KEY = "bokehserve:redis-since"
PROCESSES_KEY = "bokehserve:processes"

# Each script changes only records this process owns (or a dead process owned), atomically.
_CLAIM = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('sadd', KEYS[2], KEYS[1]) return 1
end
return 0"""
_TAKE_OVER = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('set', KEYS[1], ARGV[2], 'EX', ARGV[3])
  redis.call('srem', KEYS[2], KEYS[1]) redis.call('sadd', KEYS[3], KEYS[1]) return 1
end
return 0"""
_RELEASE = """
redis.call('srem', KEYS[2], KEYS[1])
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0"""
_REREGISTER = """
local lost = {}
for i = 3, #ARGV do
  local key = ARGV[i]
  if redis.call('set', key, ARGV[1], 'NX', 'EX', ARGV[2]) or redis.call('get', key) == ARGV[1] then
    redis.call('sadd', KEYS[1], key)
  else
    table.insert(lost, key)
  end
end
return lost"""
_FORGET_PROCESS = """
local owned = redis.call('smembers', KEYS[1])
for _, key in ipairs(owned) do
  if redis.call('get', key) == ARGV[1] then redis.call('del', key) end
end
redis.call('del', KEYS[1]) redis.call('hdel', KEYS[2], ARGV[1])
return #owned"""


def redis_host() -> dict[str, Any] | None:
    """The first host of the channels_redis layer, as channels_redis reads it; None for other layers.

    A URL (``"redis://..."`` or ``{"address": ...}``), ``{"host": ..., "port": ...}``, a
    ``(host, port)`` pair, or a Sentinel entry (``{"master_name": ..., "sentinels": [...]}``):
    our own Redis clients connect to the same server as the layer, failovers included.
    """
    layer = (getattr(settings, "CHANNEL_LAYERS", {}) or {}).get("default", {})
    if "channels_redis" not in layer.get("BACKEND", ""):
        return None
    from channels_redis.utils import decode_hosts

    return dict(decode_hosts(layer.get("CONFIG", {}).get("hosts"))[0])


def _client_options(host: dict[str, Any]) -> dict[str, Any]:
    # Our own, short timeouts: a heartbeat or a claim must fail fast, not after the layer's
    # long socket_timeout (which covers its blocking receives).
    return {**host, "socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT}


def async_client(host: dict[str, Any]) -> Any:
    """An asyncio Redis client for ``host`` (a channels_redis host entry)."""
    from channels_redis.utils import create_pool
    from redis.asyncio import Redis

    return Redis(connection_pool=create_pool(_client_options(host)))


def sync_client(host: dict[str, Any]) -> Any:
    """A blocking Redis client for ``host``, for the heartbeat thread and sync Django code."""
    import redis

    options = _client_options(host)
    if "address" in options:
        return redis.Redis.from_url(options.pop("address"), **options)
    master_name = options.pop("master_name", None)
    if master_name is not None:
        from redis.sentinel import Sentinel

        sentinels = options.pop("sentinels")
        # Short timeouts for the Sentinels too: the heartbeat asks them every beat.
        sentinel_kwargs = options.pop("sentinel_kwargs", None) or {
            "socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT,
        }
        sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)
        return sentinel.master_for(master_name, **options)
    return redis.Redis(**options)


def owner_key(app_name: str, session_id: str) -> str:
    digest = hashlib.sha256(f"{app_name}\0{session_id}".encode()).hexdigest()[:40]
    return f"bokehserve:owner:{digest}"


def alive_key(channel: str) -> str:
    return f"bokehserve:alive:{channel}"


def owned_key(channel: str) -> str:
    return f"bokehserve:owned:{channel}"


EventListener = Callable[[str, dict[str, Any]], Awaitable[None]]


class MasterChanged(Exception):
    """The Sentinel names another master than the one our connections were made to."""


class Membership:
    """This process's place among the processes that share a channel layer."""

    def __init__(self) -> None:
        self.process_channel: str | None = None
        self.redis: Any = None
        #: Whether the last heartbeat reached Redis (always False without Redis).
        self.connected = False
        #: Whether Redis is known to be unreachable (False before the first heartbeat).
        self.known_down = False
        #: Set when the process stops taking new sessions (drain); peers see it in stats.
        self.draining = False
        self.started = False
        self._host: dict[str, Any] | None = None
        self._layer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {}
        self._listeners: list[EventListener] = []
        self._heart: _Heartbeat | None = None
        #: Owner keys of this process's sessions, kept here too: a Redis that restarted has
        #: lost its copy. Changed on the loop, read by the heartbeat thread.
        self._owned: set[str] = set()
        self._owned_lock = threading.Lock()
        self._rejoin = asyncio.Event()
        self._reachable_again = asyncio.Event()

    @property
    def distributed(self) -> bool:
        """Whether sessions are shared with other processes (channels_redis configured)."""
        return self._host is not None and self.started

    def on(self, message_type: str, handler: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """Handle channel-layer messages of ``message_type`` sent to this process."""
        self._handlers[message_type] = handler

    def on_event(self, listener: EventListener) -> None:
        """Call ``listener(event, data)`` on the loop for each heartbeat event (see the module doc)."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Take a channel, listen on it, and start beating. Never waits on Redis."""
        if self.started:
            return
        from channels.layers import get_channel_layer

        self._loop = asyncio.get_running_loop()
        self._layer = get_channel_layer()
        if self._layer is None:
            logger.warning("No channel layer: broadcast and sign-out revocation are off")
            return
        self.process_channel = await self._layer.new_channel()
        self._host = redis_host()
        self.started = True
        self._rejoin = asyncio.Event()
        self._reachable_again = asyncio.Event()
        self._tasks = [self._loop.create_task(self._listen()), self._loop.create_task(self._keep_group())]
        if self._host is not None:
            self.redis = async_client(self._host)
            self._heart = _Heartbeat(self, self._host)
            self._heart.start()
        logger.info(
            "Process %d on channel %s (%s)", os.getpid(), self.process_channel,
            "sessions shared through Redis" if self._host is not None else "sessions local to this process",
        )

    def forget(self) -> None:
        """Drop the state of a run whose event loop has ended (tests run one loop per test)."""
        if self._heart is not None:
            self._heart.stop(wait=False)
        self.__init__()  # type: ignore[misc]

    async def stop(self) -> None:
        """Stop beating, remove this process's records, leave the broadcast group."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a channel-layer receive may not end promptly when cancelled.
            await asyncio.wait(self._tasks, timeout=REDIS_TIMEOUT)
        self._tasks.clear()
        heart, self._heart = self._heart, None
        if heart is not None:
            await asyncio.get_running_loop().run_in_executor(None, heart.stop)
        if self.redis is not None and self.process_channel and not self.known_down:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.redis.eval(
                    _FORGET_PROCESS, 2, owned_key(self.process_channel), PROCESSES_KEY, self.process_channel
                ), REDIS_TIMEOUT)
                await asyncio.wait_for(self.redis.delete(alive_key(self.process_channel)), REDIS_TIMEOUT)
        if self._layer is not None and self.process_channel and not self.known_down:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._layer.group_discard(BROADCAST_GROUP, self.process_channel), REDIS_TIMEOUT)
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.redis.aclose(), REDIS_TIMEOUT)
        self.connected = False
        self.known_down = False
        self.started = False

    async def _listen(self) -> None:
        """Receive what other processes send to this one; back off while the layer fails."""
        failures = 0
        while True:
            try:
                message = await self._layer.receive(self.process_channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if failures == 1:
                    logger.warning("Channel layer receive failed (%s); retrying with backoff", exc)
                self._reachable_again.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._reachable_again.wait(), min(0.25 * 2**failures, MAX_RECEIVE_RETRY_INTERVAL)
                    )
                continue
            if failures:
                logger.info("Channel layer receives again after %d failed attempt(s)", failures)
                failures = 0
            handler = self._handlers.get(message.get("type", ""))
            if handler is None:
                logger.warning("Ignoring channel-layer message of unknown type %r", message.get("type"))
                continue
            try:
                await handler(message)
            except Exception:
                logger.error("Error handling %r from the channel layer", message.get("type"), exc_info=True)

    async def _keep_group(self) -> None:
        """Stay in the broadcast group: join now, after Redis comes back, and every so often."""
        while True:
            if self.connected or self._host is None:
                try:
                    await asyncio.wait_for(self._layer.group_add(BROADCAST_GROUP, self.process_channel), REDIS_TIMEOUT)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.debug("Could not join the broadcast group yet: %s", exc)
                    await asyncio.sleep(1)
                    continue
            self._rejoin.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rejoin.wait(), GROUP_REJOIN_INTERVAL)

    def _report(self, event: str, data: dict[str, Any]) -> None:
        """Heartbeat thread -> loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._dispatch, event, data)

    def _dispatch(self, event: str, data: dict[str, Any]) -> None:
        if event == "down" and data.get("master_changed"):
            task = asyncio.ensure_future(self._drop_connections())
            task.add_done_callback(_log_failure)
        if event in ("up", "restarted"):
            self._rejoin.set()
            self._reachable_again.set()
        for listener in self._listeners:
            task = asyncio.ensure_future(listener(event, data))
            task.add_done_callback(_log_failure)

    async def _drop_connections(self) -> None:
        """Close our and the channel layer's connections: they reconnect to the Sentinel's new master.

        A promoted replica does not end the connections to the old master while it still
        runs (SENTINEL FAILOVER, a partition): Sentinel demotes it only about 10 s later,
        and everything written there meanwhile is lost when it resyncs.
        """
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.redis.connection_pool.disconnect(), REDIS_TIMEOUT)
        close_pools = getattr(self._layer, "close_pools", None)
        if close_pools is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(close_pools(), REDIS_TIMEOUT)

    # -- session records -------------------------------------------------------

    async def owner_of(self, key: str) -> str | None:
        owner = await self.redis.get(key)
        return owner.decode() if owner is not None else None

    async def claim(self, key: str) -> bool:
        """Record this process as the owner of a session nobody owns; whether it won."""
        won = bool(await self.redis.eval(
            _CLAIM, 2, key, owned_key(self.process_channel), self.process_channel, OWNER_RECORD_TTL
        ))
        if won:
            self._remember_owned(key)
        return won

    async def take_over(self, key: str, dead_owner: str) -> bool:
        """Replace a dead process's record with this process's; whether it won."""
        won = bool(await self.redis.eval(
            _TAKE_OVER, 3, key, owned_key(dead_owner), owned_key(self.process_channel),
            dead_owner, self.process_channel, OWNER_RECORD_TTL,
        ))
        if won:
            self._remember_owned(key)
        return won

    def _remember_owned(self, key: str) -> None:
        with self._owned_lock:
            self._owned.add(key)

    def forget_owned(self, keys: Iterable[str]) -> None:
        with self._owned_lock:
            self._owned.difference_update(keys)

    def owned_keys(self) -> list[str]:
        with self._owned_lock:
            return list(self._owned)

    async def release(self, key: str) -> None:
        """Remove this process's record of a session (never a newer owner's)."""
        self.forget_owned([key])
        if not self.distributed or self.known_down:
            return  # the record is cleaned up with this process's others, or re-checked later
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.redis.eval(_RELEASE, 2, key, owned_key(self.process_channel), self.process_channel),
                REDIS_TIMEOUT,
            )

    async def is_alive(self, channel: str) -> bool:
        return (await self.alive_map([channel]))[channel]

    async def alive_map(self, channels: Iterable[str]) -> dict[str, bool]:
        """Which of these processes still beat. Processes count as alive when Redis cannot tell."""
        channels = list(channels)
        if not self.distributed or not self.connected or not channels:
            return dict.fromkeys(channels, True)
        try:
            pipe = self.redis.pipeline(transaction=False)
            for channel in channels:
                pipe.exists(alive_key(channel))
            results = await pipe.execute()
        except Exception:
            return dict.fromkeys(channels, True)
        return {channel: bool(found) for channel, found in zip(channels, results, strict=True)}

    async def settle_remaining(self) -> float:
        """Seconds left in the window after a Redis restart in which owners re-register."""
        since = await self.redis.get(SINCE_KEY)
        if since is None:
            return RESTART_SETTLE
        if self._heart is not None and float(since) == self._heart.first_since:
            return 0.0  # the Redis this process started with: every owner's records are there
        return max(0.0, float(since) + RESTART_SETTLE - time.time())

    # -- shared values and stats ------------------------------------------------

    async def read_shared(self, name: str) -> bytes | None:
        """A value other processes may have written with ``write_shared`` (None without Redis)."""
        if not self.distributed or self.known_down:
            return None
        try:
            return await asyncio.wait_for(self.redis.get(f"bokehserve:{name}"), REDIS_TIMEOUT)
        except Exception:
            return None

    async def process_stats(self) -> list[dict[str, Any]]:
        """Session counts of every live process (this one only, without Redis or while it is down)."""
        from ..sessions import runtime

        local = {**_process_info(self), "apps": runtime.stats()}
        if not self.distributed or not self.connected:
            return [local]
        try:
            entries = await asyncio.wait_for(self.redis.hgetall(PROCESSES_KEY), REDIS_TIMEOUT)
        except Exception:
            return [local]
        now = time.time()
        result = []
        for channel, raw in entries.items():
            info = json.loads(raw)
            if channel.decode() == self.process_channel:
                result.append(local)
            elif now - info.get("beat", 0) <= ALIVE_TTL:
                result.append(info)
        return sorted(result, key=lambda s: (s["host"], s["pid"]))

    # -- messaging -------------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await self._layer.send(channel, message)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await self._layer.group_send(group, message)


def write_shared(name: str, value: Any, ttl: int) -> bool:
    """Store ``value`` under ``name`` for ``ttl`` seconds, from sync code; whether it was stored."""
    host = redis_host()
    if host is None:
        return False
    try:
        client = sync_client(host)
        try:
            client.set(f"bokehserve:{name}", value, ex=ttl)
        finally:
            client.close()
    except Exception as exc:
        logger.warning("Could not store %s in Redis: %s", name, exc)
        return False
    return True


def _process_info(member: Membership) -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "channel": member.process_channel,
            "draining": member.draining, "beat": time.time()}


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("Error in a cluster event listener", exc_info=task.exception())


class _Heartbeat:
    """The thread that keeps this process alive in Redis, whatever its event loop is doing."""

    def __init__(self, member: Membership, host: dict[str, Any]) -> None:
        self._member = member
        self._channel = member.process_channel
        self._redis = sync_client(host)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bokehserve-heartbeat", daemon=True)
        #: The "up since" stamp of the Redis this process first beat into; None before.
        self.first_since: float | None = None
        self._since: float | None = None
        self._beats = 0
        self._stats: dict[str, Any] = {}
        #: The master the Sentinel named at the last beat (Sentinel hosts only).
        self._master: tuple[str, int] | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        self._stopping.set()
        if wait and self._thread.is_alive():
            self._thread.join(REDIS_TIMEOUT * 2)
        with contextlib.suppress(Exception):
            self._redis.close()

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                self._beat()
            except Exception as exc:
                failures += 1
                if self._member.connected or failures == 1:
                    logger.warning(
                        "Redis unreachable (%s): local sessions keep working; new sessions answer 503 "
                        "until it is back; retrying with backoff", exc,
                    )
                self._member.known_down = True
                if isinstance(exc, MasterChanged):
                    self._member._report("down", {"master_changed": True})
                    self._member.connected = False
                elif self._member.connected:
                    self._member.connected = False
                    self._member._report("down", {})
                self._stopping.wait(min(0.5 * 2 ** (failures - 1), MAX_RETRY_INTERVAL))
                continue
            failures = 0
            self._stopping.wait(HEARTBEAT_INTERVAL)

    def _beat(self) -> None:
        from ..sessions import runtime

        with contextlib.suppress(RuntimeError):  # the loop changed the tables meanwhile: reuse
            self._stats = runtime.stats()
        self._check_master()
        info = {**_process_info(self._member), "apps": self._stats}
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(alive_key(self._channel), os.getpid(), ex=ALIVE_TTL, get=True)
        pipe.hset(PROCESSES_KEY, self._channel, json.dumps(info))
        pipe.set(SINCE_KEY, time.time(), nx=True)
        pipe.get(SINCE_KEY)
        previous, _, _, since = pipe.execute()
        since = float(since) if since is not None else time.time()  # flushed between the two commands
        was_connected = self._member.connected
        restarted = False
        if self.first_since is None:
            self.first_since = self._since = since
        elif since != self._since:
            restarted = True
            # Redis lost everything (restart without persistence, flush, failover to an empty
            # replica): write this process's records again before anyone mistakes them for new.
            self._since = since
            lost = self._reregister()
            logger.warning("Redis restarted: re-registered this process's sessions (%d taken by others)", len(lost))
            self._member.connected = True
            self._member.known_down = False
            self._member._report("restarted", {"lost": lost})
            was_connected = True  # reported as "restarted", which implies "up"
        if not was_connected:
            if self._beats:
                # Back after an outage without a restart; after a Sentinel failover, say, the
                # new master may lack our latest records. Writing them again is idempotent.
                lost = self._reregister()
                if lost:
                    self._member._report("restarted", {"lost": lost})
            self._member.connected = True
            self._member.known_down = False
            # At start-up this is routine; after an outage the operator wants to see it.
            logger.log(logging.WARNING if self._beats else logging.INFO, "Redis is reachable: this process is in the cluster")
            self._member._report("up", {})
        if previous is None and self._beats and not restarted:
            # Our liveness key expired although Redis kept its data: the whole process was
            # frozen, or cut off from a Redis its peers still reached, for longer than
            # ALIVE_TTL, so peers may have taken our sessions over.
            logger.warning("This process missed its heartbeats for over %d s; checking which sessions it still owns", ALIVE_TTL)
            self._member._report("fenced", {})
        self._beats += 1
        if self._beats % CLEANUP_EVERY == 0:
            self._forget_dead_processes()

    def _check_master(self) -> None:
        """With a Sentinel: raise MasterChanged once when it names a new master.

        Our connections (and the channel layer's) to the old master may stay open and
        writable after a failover; this drops ours now, and the loop drops the others. The
        next beat then reaches the new master and writes this process's records again.
        """
        pool = self._redis.connection_pool
        manager = getattr(pool, "sentinel_manager", None)
        if manager is None:
            return
        try:
            master = tuple(manager.discover_master(pool.service_name))
        except Exception:
            return  # no Sentinel answers: keep the connection we have
        previous, self._master = self._master, master
        if previous is not None and master != previous:
            pool.disconnect()
            raise MasterChanged(f"the Sentinel promoted {master[0]}:{master[1]} to master")

    def _reregister(self) -> list[str]:
        """Write this process's owner records again; the keys another process holds now."""
        lost = [key.decode() for key in self._redis.eval(
            _REREGISTER, 1, owned_key(self._channel), self._channel, OWNER_RECORD_TTL, *self._member.owned_keys()
        )]
        self._member.forget_owned(lost)
        return lost

    def _forget_dead_processes(self) -> None:
        """Delete the records of processes that stopped beating long ago (SIGKILL, OOM)."""
        now = time.time()
        for channel, raw in self._redis.hgetall(PROCESSES_KEY).items():
            channel = channel.decode()
            if channel == self._channel or now - json.loads(raw).get("beat", now) < DEAD_AFTER:
                continue
            if self._redis.exists(alive_key(channel)):
                continue  # a clock on another host is behind; its key says it is alive
            count = self._redis.eval(_FORGET_PROCESS, 2, owned_key(channel), PROCESSES_KEY, channel)
            logger.info("Forgot %d session record(s) of process %s, silent for over %d s", count, channel, DEAD_AFTER)


membership = Membership()

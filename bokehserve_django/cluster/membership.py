"""Shares sessions between processes: session ownership in Redis, WebSocket relays, broadcast.

Every process has a channel on the channel layer. With channels_redis, a session belongs
to the process that created it, recorded in Redis under a key with a TTL that the owner
keeps fresh; an unknown session id is claimed with SET NX, so an app runs once per session
across all processes. A WebSocket that lands on another process (the *edge*) is relayed
to the owner over the channel layer, frames in order, binary buffers included.

With the in-memory layer (one process) ownership is local and relays never happen, but
broadcast (``bokehserve_django.broadcast``) works the same way.

This is the only module that talks to the channel layer and Redis for sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings


__all__ = ("BROADCAST_GROUP", "Cluster", "cluster")

logger = logging.getLogger(__name__)

#: Group every process joins to receive broadcasts.
BROADCAST_GROUP = "bokehserve.broadcast"
#: Seconds an owner record lives without refresh, and how often owners refresh.
OWNER_TTL = 30
#: Seconds a process's liveness key lives without refresh (relayed clients of a dead owner
#: are closed within about this long), and how often it is refreshed.
ALIVE_TTL = 4
HEARTBEAT_INTERVAL = 1.0
#: Seconds after a Redis (re)start during which new claims wait for owners to re-register.
RESTART_SETTLE = 2.5 * HEARTBEAT_INTERVAL
_SINCE_KEY = "bokehserve:redis-since"

# Compare-and-set / compare-and-delete, so a process only changes records it owns.
_CAS = "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('set', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1 end return 0"
_CAD = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def redis_url() -> str | None:
    """The Redis of the channel layer (channels_redis ``hosts[0]``), if it is channels_redis."""
    layer = (getattr(settings, "CHANNEL_LAYERS", {}) or {}).get("default", {})
    if "channels_redis" not in layer.get("BACKEND", ""):
        return None
    hosts = layer.get("CONFIG", {}).get("hosts") or ["redis://localhost:6379/0"]
    host = hosts[0]
    if isinstance(host, str):
        return host
    if isinstance(host, dict):
        return host.get("address")
    if isinstance(host, list | tuple):
        return f"redis://{host[0]}:{host[1]}/0"
    return None


class Cluster:
    """This process's place among the processes that share a channel layer."""

    def __init__(self) -> None:
        self.process_channel: str | None = None
        self.redis: Any = None
        self._layer: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {}
        self._redis_down = False
        #: The "up since" stamp of the Redis this process first beat into (a change means a restart).
        self._first_since: float | None = None
        self.started = False

    @property
    def distributed(self) -> bool:
        """Whether sessions are shared with other processes (channels_redis configured)."""
        return self.redis is not None

    def on(self, message_type: str, handler: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """Handle channel-layer messages of ``message_type`` sent to this process."""
        self._handlers[message_type] = handler

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        if self.started:
            return
        self.started = True
        from channels.layers import get_channel_layer

        self._layer = get_channel_layer()
        if self._layer is None:
            logger.warning("No channel layer: broadcast and sign-out revocation are off")
            return
        self.process_channel = await self._layer.new_channel()
        await self._layer.group_add(BROADCAST_GROUP, self.process_channel)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._listen()))
        url = redis_url()
        if url:
            import redis.asyncio as aioredis

            self.redis = aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            await self._beat()
            self._tasks.append(loop.create_task(self._heartbeat_forever()))
        logger.info(
            "Process %d on channel %s (%s)", os.getpid(), self.process_channel,
            "sessions shared through Redis" if self.distributed else "sessions local to this process",
        )

    def forget(self) -> None:
        """Drop the state of a run whose event loop has ended (no I/O)."""
        self._tasks.clear()
        self._first_since = None
        self.redis = None
        self.process_channel = None
        self.started = False

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.redis is not None and self.process_channel:
            with contextlib.suppress(Exception):
                await self.redis.delete(self._alive_key(self.process_channel))
        if self._layer is not None and self.process_channel:
            with contextlib.suppress(Exception):
                await self._layer.group_discard(BROADCAST_GROUP, self.process_channel)
        self.started = False

    async def _listen(self) -> None:
        while True:
            try:
                message = await self._layer.receive(self.process_channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("Channel layer receive failed (%s); retrying in 1 s", exc)
                await asyncio.sleep(1)
                continue
            handler = self._handlers.get(message.get("type", ""))
            if handler is None:
                logger.warning("Ignoring channel-layer message of unknown type %r", message.get("type"))
                continue
            try:
                await handler(message)
            except Exception:
                logger.error("Error handling %r from the channel layer", message.get("type"), exc_info=True)

    # -- Redis records ---------------------------------------------------------

    @staticmethod
    def _owner_key(app_name: str, session_id: str) -> str:
        digest = hashlib.sha256(f"{app_name}\0{session_id}".encode()).hexdigest()[:40]
        return f"bokehserve:owner:{digest}"

    @staticmethod
    def _alive_key(channel: str) -> str:
        return f"bokehserve:alive:{channel}"

    async def _beat(self) -> None:
        """Refresh this process's liveness and the owner records of its live sessions."""
        from ..sessions import runtime

        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self._alive_key(self.process_channel), os.getpid(), ex=ALIVE_TTL)
        stats = {"pid": os.getpid(), "host": socket.gethostname(), "apps": runtime.stats()}
        pipe.set(f"bokehserve:stats:{self.process_channel}", json.dumps(stats), ex=ALIVE_TTL)
        # When this Redis has been up since (rewritten by the first beat after a restart).
        pipe.set(_SINCE_KEY, time.time(), nx=True)
        for name, app_sessions in runtime.apps.items():
            for session in app_sessions.sessions:
                pipe.set(self._owner_key(name, session.id), self.process_channel, ex=OWNER_TTL)
        pipe.get(_SINCE_KEY)
        results = await pipe.execute()
        if self._first_since is None and results[-1] is not None:
            self._first_since = float(results[-1])

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            try:
                await self._beat()
                # Re-join the broadcast group: Redis may have restarted (groups lost), and
                # channels_redis expires memberships after group_expiry.
                await self._layer.group_add(BROADCAST_GROUP, self.process_channel)
                if self._redis_down:
                    logger.warning("Redis is reachable again")
                    self._redis_down = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._redis_down:
                    logger.warning("Redis unreachable (%s); local sessions keep working", exc)
                    self._redis_down = True

    async def claim(self, app_name: str, session_id: str) -> str | None:
        """Who serves this session: None for this process (claimed if new), else the owner's channel.

        A new id is claimed with SET NX, so exactly one process creates it. A record left
        by a dead process (its liveness key expired) is taken over.
        """
        if not self.distributed:
            return None
        key = self._owner_key(app_name, session_id)
        me = self.process_channel
        try:
            for _ in range(3):
                if await self.redis.set(key, me, nx=True, ex=OWNER_TTL):
                    return await self._confirm_claim(key)
                owner = await self.redis.get(key)
                if owner is None:
                    continue
                owner = owner.decode()
                if owner == me:
                    return None
                if await self.redis.exists(self._alive_key(owner)):
                    return owner
                # No liveness key: dead, or Redis restarted and the owner has not beaten yet.
                await asyncio.sleep(HEARTBEAT_INTERVAL * 1.5)
                if await self.redis.exists(self._alive_key(owner)):
                    return owner
                if await self.redis.eval(_CAS, 1, key, owner, me, OWNER_TTL):
                    logger.info("Took over session %r of app %r from a dead process", session_id, app_name)
                    return None
        except Exception as exc:
            # Redis down: serve locally rather than not at all; the record is written at the next beat.
            logger.warning("Could not reach Redis to find the owner of session %r (%s); serving it here", session_id, exc)
            return None
        return None

    async def _confirm_claim(self, key: str) -> str | None:
        """Right after a Redis restart the owner records are gone until every owner beats
        again: an existing session would look new. Wait for the beats, then see who owns it.
        """
        since = await self.redis.get(_SINCE_KEY)
        if since is not None and float(since) == self._first_since:
            return None  # the Redis this process started with: every owner record is there
        settle = float(since) + RESTART_SETTLE - time.time() if since is not None else RESTART_SETTLE
        if settle <= 0:
            return None
        await asyncio.sleep(settle)
        owner = await self.redis.get(key)
        if owner is None or owner.decode() == self.process_channel:
            await self.redis.set(key, self.process_channel, ex=OWNER_TTL)
            return None
        logger.info("Session record reappeared after a Redis restart; relaying to its owner")
        return owner.decode()

    async def process_stats(self) -> list[dict[str, Any]]:
        """Session counts of every live process (this one only, without Redis)."""
        from ..sessions import runtime

        if not self.distributed:
            return [{"pid": os.getpid(), "host": socket.gethostname(), "apps": runtime.stats()}]
        result = []
        async for key in self.redis.scan_iter(match="bokehserve:stats:*", count=100):
            raw = await self.redis.get(key)
            if raw:
                result.append(json.loads(raw))
        return sorted(result, key=lambda s: (s["host"], s["pid"]))

    async def release(self, app_name: str, session_id: str) -> None:
        """Forget the owner record of a session this process destroyed."""
        if not self.distributed:
            return
        with contextlib.suppress(Exception):
            await self.redis.eval(_CAD, 1, self._owner_key(app_name, session_id), self.process_channel)

    async def is_alive(self, channel: str) -> bool:
        """Whether the process behind ``channel`` still beats (True when Redis cannot tell)."""
        if not self.distributed:
            return True
        try:
            return bool(await self.redis.exists(self._alive_key(channel)))
        except Exception:
            return True

    # -- messaging -------------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await self._layer.send(channel, message)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await self._layer.group_send(group, message)


cluster = Cluster()

"""Sends events from Django code to live Bokeh sessions, in every process.

Django side (a view, a signal handler, a management command, a Celery task)::

    from bokehserve_django import broadcast
    broadcast.send("new_reading", {"t": 3.5, "value": 12}, app="live")          # sync code
    await broadcast.asend("new_reading", {...}, app="live")                     # async code
    broadcast.send("notice", {"text": "hi"}, user=request.user)                 # one user's sessions

App side (in the app's code)::

    from bokehserve_django.broadcast import subscribe

    def on_reading(payload):
        source.stream({"t": [payload["t"]], "value": [payload["value"]]})

    subscribe(curdoc(), "new_reading", on_reading)

The callback runs as a next-tick callback of the session, under its document lock.
Payloads must be what the channel layer can carry (msgpack: dicts, lists, str, numbers,
bytes). With the in-memory layer this reaches the sessions of this process; with
channels_redis, of every process.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any

from asgiref.sync import async_to_sync

__all__ = ("asend", "send", "subscribe", "unsubscribe")

logger = logging.getLogger(__name__)

MESSAGE_TYPE = "bokehserve.broadcast"

#: Document -> {topic: [callbacks]}; documents leave it when they are destroyed.
_subscriptions: weakref.WeakKeyDictionary[Any, dict[str, list[Callable[[Any], Any]]]] = weakref.WeakKeyDictionary()


def subscribe(document: Any, topic: str, callback: Callable[[Any], Any]) -> None:
    """Call ``callback(payload)`` on this session's document for each event on ``topic``."""
    _subscriptions.setdefault(document, {}).setdefault(topic, []).append(callback)


def unsubscribe(document: Any, topic: str, callback: Callable[[Any], Any]) -> None:
    callbacks = _subscriptions.get(document, {}).get(topic, [])
    if callback in callbacks:
        callbacks.remove(callback)


#: Seconds a send may take before it is given up (Redis unreachable).
SEND_TIMEOUT = 2.0


async def asend(topic: str, payload: Any = None, *, app: str | None = None, user: Any = None) -> bool:
    """Send ``payload`` to the subscribers of ``topic`` in the live sessions of ``app`` (or all
    apps), optionally only those opened by ``user`` (a user object or primary key).

    Delivery is at most once: while the channel layer (Redis) is unreachable the event is
    dropped with a warning, and False is returned, so the Django view or signal handler
    that sent it keeps working.
    """
    from channels.layers import get_channel_layer

    from .membership import BROADCAST_GROUP

    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("Broadcast needs CHANNEL_LAYERS; see docs/cluster.md.")
    user_pk = getattr(user, "pk", user)
    message = {
        "type": MESSAGE_TYPE,
        "topic": topic,
        "payload": payload,
        "app": app,
        "user": None if user_pk is None else str(user_pk),
    }
    try:
        await asyncio.wait_for(layer.group_send(BROADCAST_GROUP, message), SEND_TIMEOUT)
    except Exception as exc:
        logger.warning("Broadcast of %r not sent: the channel layer is unreachable (%s)", topic, exc)
        return False
    return True


def send(topic: str, payload: Any = None, *, app: str | None = None, user: Any = None) -> bool:
    """``asend`` for sync code (views, signal handlers, management commands, Celery tasks)."""
    return async_to_sync(asend)(topic, payload, app=app, user=user)


async def deliver(message: dict[str, Any]) -> int:
    """This process's part: schedule the callbacks of matching local sessions; how many."""
    from ..sessions import runtime

    topic, payload = message["topic"], message.get("payload")
    count = 0
    for name, app_sessions in runtime.apps.items():
        if message.get("app") not in (None, name):
            continue
        for session in app_sessions.sessions:
            if message.get("user") is not None:
                user = session.context.user
                if str(getattr(user, "pk", None)) != message["user"]:
                    continue
            document = session.document
            for callback in list(_subscriptions.get(document, {}).get(topic, [])):
                document.add_next_tick_callback(partial(callback, payload))
                count += 1
    return count


def install() -> None:
    from .membership import membership

    async def handle(message: dict[str, Any]) -> None:
        await deliver(message)

    membership.on(MESSAGE_TYPE, handle)

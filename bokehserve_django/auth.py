"""Connects Bokeh sessions to Django users: who a WebSocket belongs to, and sign-out revocation.

A page request binds the signed-in user into the session token (``bokehserve_user``), so a
WebSocket from an embed on another origin (no Django cookie) still knows its user. That
binding is trusted only when tokens are signed. Signing out, or being deactivated, closes
the user's live sessions in every process that shares the channel layer, and refuses
tokens issued before that moment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from .conf import bokeh_settings

__all__ = ("TOKEN_ISSUED_KEY", "TOKEN_USER_KEY", "register_connection", "revoke_user", "token_claims", "user_for_websocket")

logger = logging.getLogger(__name__)

TOKEN_USER_KEY = "bokehserve_user"
TOKEN_ISSUED_KEY = "bokehserve_issued"
#: Channel-layer message (to every process) that closes a user's sessions.
REVOKE_MESSAGE = "bokehserve.revoke"

#: user pk (as str) -> time of the last sign-out/deactivation this process heard of. Bounded
#: in time: entries past ``revocation_horizon()`` are dropped (see _forget_old_revocations).
_revoked_at: dict[str, float] = {}
_revocations_pruned_at = 0.0
#: How often (seconds) the table is swept; each sweep is one pass over it.
_PRUNE_INTERVAL = 60.0


def token_claims(user: Any) -> dict[str, Any]:
    """What a page request adds to the token for ``user`` (nothing for anonymous users)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return {}
    return {TOKEN_USER_KEY: str(user.pk), TOKEN_ISSUED_KEY: time.time()}


def revocation_horizon() -> int:
    """Seconds a sign-out must be remembered: while a token issued before it may still open a
    session (its lifetime) or rejoin one (the reconnect grace), plus a minute of clock skew."""
    return bokeh_settings.SESSION_TOKEN_EXPIRATION + bokeh_settings.SESSION_TOKEN_RECONNECT_GRACE + 60


def note_revocation(user_pk: Any, at: float) -> None:
    key = str(user_pk)
    _revoked_at[key] = max(at, _revoked_at.get(key, 0.0))
    _forget_old_revocations(time.time())


def _forget_old_revocations(now: float) -> None:
    """Drop sign-outs older than the horizon: every token issued before them is refused anyway."""
    global _revocations_pruned_at
    if now - _revocations_pruned_at < _PRUNE_INTERVAL:
        return
    _revocations_pruned_at = now
    oldest_needed = now - revocation_horizon()
    for key in [key for key, at in _revoked_at.items() if at < oldest_needed]:
        del _revoked_at[key]


def is_revoked(user_pk: Any, issued_at: float) -> bool:
    return _revoked_at.get(str(user_pk), -1.0) >= issued_at


async def user_for_websocket(scope_user: Any, payload: dict[str, Any]) -> Any:
    """The Django user of a WebSocket: the session cookie's, else the one bound into a signed token."""
    if scope_user is not None and getattr(scope_user, "is_authenticated", False):
        return scope_user
    user_pk = payload.get(TOKEN_USER_KEY)
    if user_pk is None or not bokeh_settings.sign_sessions:
        return scope_user if scope_user is not None else AnonymousUser()
    from channels.db import database_sync_to_async

    issued = float(payload.get(TOKEN_ISSUED_KEY, 0))
    if is_revoked(user_pk, issued) or await _revoked_in_cluster(user_pk, issued):
        logger.info("Token for user %s was issued before they signed out; treating as anonymous", user_pk)
        return AnonymousUser()
    # database_sync_to_async: closes stale connections in the thread, as a WebSocket's
    # handlers do not (BokehConsumer.dispatch).
    user = await database_sync_to_async(_active_user)(user_pk)
    return user if user is not None else AnonymousUser()


async def user_for_relayed_client(user_pk: str | None, payload: dict[str, Any]) -> Any:
    """The Django user of a WebSocket relayed from another process, which sent the user's pk."""
    from channels.db import database_sync_to_async

    user = await database_sync_to_async(_active_user)(user_pk) if user_pk is not None else None
    return await user_for_websocket(user, {})


async def _revoked_in_cluster(user_pk: Any, issued_at: float) -> bool:
    """Whether Redis remembers a sign-out after ``issued_at`` (for processes started after it)."""
    from .cluster import membership

    at = await membership.read_shared(_revocation_name(user_pk))
    if at is None:
        return False
    note_revocation(user_pk, float(at))
    return float(at) >= issued_at


def _revocation_name(user_pk: Any) -> str:
    return f"revoked:{user_pk}"


def _remember_in_redis(user_pk: Any, at: float) -> None:
    """Keep the sign-out time in Redis as long as a token issued before it could be valid."""
    from .cluster import write_shared

    write_shared(_revocation_name(user_pk), at, ttl=revocation_horizon())


def _revoke_bearer_tokens(user_pk: Any, at: float) -> None:
    """Void the user's headless-client tokens too: in the database, so every process sees it."""
    from .bearer import revoke_user_tokens

    try:
        count = revoke_user_tokens(user_pk, at)
    except Exception as exc:  # noqa: BLE001 - a sign-out must not fail on this; the log says why
        logger.error("Could not revoke the bearer tokens of user %s: %s", user_pk, exc)
        return
    if count:
        logger.info("Revoked %d bearer token(s) of user %s", count, user_pk)


def _active_user(user_pk: str) -> Any:
    model = get_user_model()
    try:
        return model._default_manager.filter(pk=model._meta.pk.to_python(user_pk), is_active=True).first()
    except Exception:
        return None


def revoke_user(user_pk: Any) -> None:
    """Close ``user_pk``'s live Bokeh sessions in every process and refuse their older tokens.

    Safe to call from sync code (signal handlers, views, management commands).
    """
    at = time.time()
    note_revocation(user_pk, at)
    _remember_in_redis(user_pk, at)
    _revoke_bearer_tokens(user_pk, at)
    from channels.layers import get_channel_layer

    from .cluster import BROADCAST_GROUP

    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": REVOKE_MESSAGE, "user": str(user_pk), "at": at}

    async def tell_every_process() -> None:
        # Bounded: a sign-out page must not hang while Redis is unreachable.
        await asyncio.wait_for(layer.group_send(BROADCAST_GROUP, message), 2)

    try:
        # Every process hears it: each closes the user's connections it carries and
        # refuses tokens issued before this moment.
        async_to_sync(tell_every_process)()
    except Exception as exc:
        logger.error("Could not broadcast the sign-out of user %s to Bokeh sessions: %s", user_pk, exc)


#: user pk (as str) -> the WebSocket consumers of that user in this process, and back.
_connections: dict[str, set[Any]] = {}
_user_of_connection: dict[Any, str] = {}


def register_connection(user: Any, consumer: Any) -> None:
    """Remember that ``consumer`` carries a session of ``user`` (for sign-out)."""
    if getattr(user, "is_authenticated", False):
        key = str(user.pk)
        unregister_connection(consumer)  # one user per connection
        _connections.setdefault(key, set()).add(consumer)
        _user_of_connection[consumer] = key


def connections_of(user_pk: Any) -> list[Any]:
    """The WebSocket consumers of ``user_pk`` in this process (bearer.py closes a revoked token's)."""
    return list(_connections.get(str(user_pk), ()))


def unregister_connection(consumer: Any) -> None:
    key = _user_of_connection.pop(consumer, None)
    if key is None:
        return
    consumers = _connections.get(key)
    if consumers is not None:
        consumers.discard(consumer)
        if not consumers:
            del _connections[key]


async def _handle_revocation(message: dict[str, Any]) -> None:
    note_revocation(message["user"], message["at"])
    for consumer in list(_connections.get(str(message["user"]), ())):
        # Closing runs the sessions' hooks: do it aside, not in the process's message loop.
        asyncio.get_running_loop().create_task(_revoke(consumer, message["user"]))


async def _revoke(consumer: Any, user_pk: str) -> None:
    try:
        await consumer.revoke()
    except Exception:
        logger.error("Could not close a session of user %s", user_pk, exc_info=True)


def all_connections() -> list[Any]:
    """Every WebSocket consumer of a signed-in (or bearer-token) user in this process."""
    return list(_user_of_connection)


async def close_sessions_of_inactive_users() -> None:
    """Close the sessions of users who were deactivated or deleted without this process
    hearing of it: a ``queryset.update(is_active=False)`` (no signal), or a sign-out
    broadcast lost while Redis was down. Run after each session sweep (one query)."""
    if not _connections:
        return
    gone = await sync_to_async(_inactive_among)(list(_connections))
    for user_pk in gone:
        logger.info("User %s is no longer active: closing their sessions in this process", user_pk)
        note_revocation(user_pk, time.time())
        for consumer in list(_connections.get(user_pk, ())):
            asyncio.get_running_loop().create_task(_revoke(consumer, user_pk))


def _inactive_among(user_pks: list[str]) -> set[str]:
    """Those of ``user_pks`` (as str) that are not active users any more (deactivated or deleted)."""
    from django.db import close_old_connections

    model = get_user_model()
    try:
        to_python = model._meta.pk.to_python
        active = model._default_manager.filter(pk__in=[to_python(pk) for pk in user_pks], is_active=True)
        return set(user_pks) - {str(pk) for pk in active.values_list("pk", flat=True)}
    finally:
        close_old_connections()


def install() -> None:
    """Let this process hear of sign-outs, wherever they happen, and re-check its users'
    accounts after each session sweep."""
    from .cluster import membership
    from .sessions import runtime

    membership.on(REVOKE_MESSAGE, _handle_revocation)
    if close_sessions_of_inactive_users not in runtime.sweep_checks:
        runtime.sweep_checks.append(close_sessions_of_inactive_users)


def on_user_logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    if user is not None and getattr(user, "pk", None) is not None:
        revoke_user(user.pk)


def on_user_saved(sender: Any, instance: Any, created: bool = False, **kwargs: Any) -> None:
    if not created and getattr(instance, "is_active", True) is False:
        revoke_user(instance.pk)

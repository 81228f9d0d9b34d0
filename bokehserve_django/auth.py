"""Connects Bokeh sessions to Django users: who a WebSocket belongs to, and sign-out revocation.

A page request binds the signed-in user into the session token (``bokehserve_user``), so a
WebSocket from an embed on another origin (no Django cookie) still knows its user. That
binding is trusted only when tokens are signed. Signing out, or being deactivated, closes
the user's live sessions in every process that shares the channel layer, and refuses
tokens issued before that moment.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from .conf import bokeh_settings

__all__ = ("TOKEN_ISSUED_KEY", "TOKEN_USER_KEY", "revoke_user", "token_claims", "user_for_websocket", "user_group")

logger = logging.getLogger(__name__)

TOKEN_USER_KEY = "bokehserve_user"
TOKEN_ISSUED_KEY = "bokehserve_issued"
#: Channel-layer message type that closes a user's sessions (handled by the consumer).
REVOKE_MESSAGE = "bokehserve.revoke"

#: Broadcast to every process so each refuses tokens issued before the sign-out.
REVOKED_MESSAGE = "bokehserve.revoked"

#: user pk (as str) -> time of the last sign-out/deactivation this process heard of.
_revoked_at: dict[str, float] = {}


def user_group(user_pk: Any) -> str:
    """The channel-layer group of one user's WebSockets (hashed: pks may be any text)."""
    return "bokehserve.user." + hashlib.sha256(str(user_pk).encode()).hexdigest()[:32]


def token_claims(user: Any) -> dict[str, Any]:
    """What a page request adds to the token for ``user`` (nothing for anonymous users)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return {}
    return {TOKEN_USER_KEY: str(user.pk), TOKEN_ISSUED_KEY: time.time()}


def note_revocation(user_pk: Any, at: float) -> None:
    key = str(user_pk)
    _revoked_at[key] = max(at, _revoked_at.get(key, 0.0))


def is_revoked(user_pk: Any, issued_at: float) -> bool:
    return _revoked_at.get(str(user_pk), -1.0) >= issued_at


async def user_for_websocket(scope_user: Any, payload: dict[str, Any]) -> Any:
    """The Django user of a WebSocket: the session cookie's, else the one bound into a signed token."""
    if scope_user is not None and getattr(scope_user, "is_authenticated", False):
        return scope_user
    user_pk = payload.get(TOKEN_USER_KEY)
    if user_pk is None or not bokeh_settings.sign_sessions:
        return scope_user if scope_user is not None else AnonymousUser()
    issued = float(payload.get(TOKEN_ISSUED_KEY, 0))
    if is_revoked(user_pk, issued):
        logger.info("Token for user %s was issued before they signed out; treating as anonymous", user_pk)
        return AnonymousUser()
    user = await sync_to_async(_active_user)(user_pk)
    return user if user is not None else AnonymousUser()


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
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": REVOKE_MESSAGE, "user": str(user_pk), "at": at}
    try:
        from .cluster import BROADCAST_GROUP

        # The user's open WebSockets close; every process remembers the time, so tokens
        # issued before it are refused wherever they are presented.
        async_to_sync(layer.group_send)(user_group(user_pk), message)
        async_to_sync(layer.group_send)(BROADCAST_GROUP, {**message, "type": REVOKED_MESSAGE})
    except Exception:
        logger.error("Could not broadcast the sign-out of user %s to Bokeh sessions", user_pk, exc_info=True)


def install() -> None:
    """Let this process hear of sign-outs that happen in other processes."""
    from .cluster import cluster

    async def handle(message: dict[str, Any]) -> None:
        note_revocation(message["user"], message["at"])

    cluster.on(REVOKED_MESSAGE, handle)


def on_user_logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    if user is not None and getattr(user, "pk", None) is not None:
        revoke_user(user.pk)


def on_user_saved(sender: Any, instance: Any, created: bool = False, **kwargs: Any) -> None:
    if not created and getattr(instance, "is_active", True) is False:
        revoke_user(instance.pk)

"""Carries one Bokeh session connection over a WebSocket: handshake, frames, replies, close.

Thin: it checks the upgrade (subprotocol, origin, host, token), hands frames to the
protocol layer and messages to the session layer, and turns failures into close codes.
Reads settings only through ``conf``; knows nothing of how sessions are stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from channels.consumer import AsyncConsumer, get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer

from . import bearer, registry, security, signing
from .access import AccessRequest
from .auth import register_connection, unregister_connection, user_for_websocket
from .cluster import EdgeRelay, Where, ensure_started, is_page_token, locate
from .conf import bokeh_settings
from .connection import ClientConnection
from .exceptions import (
    AppLoadError,
    AppNotRegistered,
    BearerTokenRefused,
    ClusterUnavailable,
    InvalidToken,
    SessionRefused,
    SessionsUnavailable,
)
from .protocol import SEND_FRAMES_EXTENSION, CloseCode
from .reconnect import check_expired_token, reload_reason as reconnect_reload_reason
from .requests import from_websocket_scope
from .sessions import runtime

__all__ = ("BokehConsumer", "NotFoundConsumer")

logger = logging.getLogger(__name__)


class BokehConsumer(AsyncConsumer):
    """The WebSocket at ``/<app>/ws``."""

    client: ClientConnection | None = None
    relay: EdgeRelay | None = None
    # No per-connection channel-layer receive: cancelling it on disconnect loses other
    # connections' messages in channels_redis; relayed traffic arrives on the process channel.
    channel_layer_alias = "bokehserve.no-per-connection-layer"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Channels' AsyncConsumer.__call__ for a consumer without a channel layer (see
        # channel_layer_alias): messages go straight from receive() to dispatch(). Channels'
        # await_many_dispatch would wrap every receive() in a new Task, which an open session
        # keeps waiting all its life (~1.5 KiB each), and would make one more per frame.
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' AsyncConsumer.dispatch awaits close_old_connections() in a worker thread
        # (sync_to_async) before every message: a trip to a thread and back, GIL hand-offs
        # included, which was a third of the loop's time in a WebSocket handshake. Nothing a
        # handler here runs on the loop uses the database: the handshake's queries (bearer
        # token, the token's user, the access policy) go through database_sync_to_async, which
        # closes stale connections in its own thread, before and after the query, as this hop
        # did; app code, hooks and run_in_thread callbacks run in worker threads that close
        # their own. So every message goes straight to its handler.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']!r}")
        await handler(message)

    async def websocket_connect(self, event: dict[str, Any]) -> None:
        self.client = None
        self.relay = None
        # One message's frames and a close never interleave: a close between the frames of a
        # message leaves BokehJS with half a message, which spoils its reconnect's first pull.
        self._wire_lock = asyncio.Lock()
        self._app_name = app_name = self.scope["url_route"]["kwargs"]["app_name"]
        refusal = self._refusal_reason(app_name)
        if refusal is not None:
            logger.warning("Refused WebSocket for app %r: %s", app_name, refusal)
            await self.send({"type": "websocket.close"})
            return
        token = self.scope["subprotocols"][1]
        entry = registry.get_app(app_name)
        try:
            info = signing.read_token(token, allow_expired=True)
            # A headless client's Authorization: Bearer token, if any, names the user.
            user = await bearer.user_for_scope(self.scope, app_name)
            if user is None:
                user = await user_for_websocket(self.scope.get("user"), info.payload)
            if info.expired:
                check_expired_token(info, user)
                reload_reason = reconnect_reload_reason(info)
                if reload_reason is not None:
                    logger.info("WebSocket for session %r of app %r: %s", info.session_id, app_name, reload_reason)
                    await self._accept_and_close(CloseCode.SESSION_GONE, reload_reason)
                    return
                logger.info("WebSocket for session %r of app %r reconnects with a token that expired %.0f s ago",
                            info.session_id, app_name, info.expired_for)
            request = from_websocket_scope(self.scope, info.payload, user)
            if not entry.access.is_public:
                access_request = AccessRequest.for_websocket(self.scope, app_name, user, request.arguments)
                if not await database_sync_to_async(entry.access.allows_sync)(access_request):
                    raise SessionRefused(f"user {getattr(user, 'pk', None)} has no access ({entry.access.description})")
            await ensure_started()
            placement = await locate(app_name, info.session_id, must_exist=is_page_token(info.payload))
            if placement.where is Where.RELAYED:
                await self._open_relay(placement.owner, info, token, user)
                return
            if placement.where is Where.GONE:
                logger.info("WebSocket for session %r of app %r: the session is gone; the page must reload", info.session_id, app_name)
                await self._accept_and_close(CloseCode.SESSION_GONE, "This session no longer exists; reload the page")
                return
            session = await runtime.app(app_name).get_or_create(info.session_id, request, token, info.payload)
        except BearerTokenRefused as exc:
            # Accepted, then closed: a plain 403 would not tell the script why.
            logger.warning("Refused WebSocket for app %r: %s", app_name, exc.reason)
            await self._accept_and_close(CloseCode.BEARER_TOKEN_REFUSED, f"Bearer token refused: {exc.reason}")
            return
        except (InvalidToken, SessionRefused) as exc:
            logger.warning("Refused WebSocket for app %r: %s", app_name, exc)
            await self.send({"type": "websocket.close"})
            return
        except AppLoadError as exc:
            logger.error("Refused WebSocket for app %r: the app failed to load:\n%s", app_name, exc.details)
            await self.send({"type": "websocket.close"})
            return
        except SessionsUnavailable as exc:
            # Accepted, then closed with a code and a reason: BokehJS reconnects, and the
            # retry lands on a process that can serve it (or on this one, later).
            code = CloseCode.CLUSTER_UNAVAILABLE if isinstance(exc, ClusterUnavailable) else CloseCode.GOING_AWAY
            logger.info("WebSocket for app %r closed at once: %s", app_name, exc.reason)
            await self._accept_and_close(code, exc.reason)
            return
        except Exception:
            logger.error("Could not open a WebSocket for app %r", app_name, exc_info=True)
            await self._accept_and_close(CloseCode.INTERNAL_ERROR, "Internal server error")
            return
        await self.send({"type": "websocket.accept", "subprotocol": "bokeh"})
        self.client = ClientConnection(
            session,
            transport=self,
            max_buffers=bokeh_settings.MAX_BUFFERS_PER_MESSAGE,
            max_message_bytes=bokeh_settings.WEBSOCKET_MAX_MESSAGE_SIZE,
        )
        await self._register_user(user)
        logger.info("WebSocket opened for session %r of app %r", session.id, app_name)
        await self.client.open()

    async def _accept_and_close(self, code: int, reason: str) -> None:
        await self.send({"type": "websocket.accept", "subprotocol": "bokeh"})
        await self.close_connection(code, reason)

    async def _register_user(self, user: Any) -> None:
        # Sign-out anywhere reaches this connection through the process's broadcast.
        register_connection(user, self)

    async def _open_relay(self, owner: str, info: Any, token: str, user: Any) -> None:
        """The session lives in another process: relay this WebSocket to it."""
        await self.send({"type": "websocket.accept", "subprotocol": "bokeh"})
        self.relay = EdgeRelay(owner, self)
        await self._register_user(user)
        user_pk = user.pk if getattr(user, "is_authenticated", False) else None
        try:
            await self.relay.open(self._app_name, info.session_id, token, info.payload, self.scope, user_pk)
        except Exception as exc:
            await self._end_relay(exc)
            return
        logger.info("WebSocket for session %r of app %r relayed to its owner process", info.session_id, self._app_name)

    async def _end_relay(self, exc: Exception) -> None:
        from channels.exceptions import ChannelFull

        relay, self.relay = self.relay, None
        if relay is None:
            return
        if isinstance(exc, ChannelFull):
            reason = "The process holding this session is overloaded; reconnecting"
        else:
            reason = "Lost contact with the process holding this session; reconnecting"
        logger.warning("Could not relay to the owner process (%r); closing the client", exc)
        await relay.end(CloseCode.RELAY_INTERRUPTED, reason)

    def _refusal_reason(self, app_name: str) -> str | None:
        """Why this upgrade must get a 403, or None to go on (checked before any token work)."""
        try:
            entry = registry.get_app(app_name)
        except AppNotRegistered:
            return "no such app"
        if entry.load_error is not None:
            return "the app failed to load; see the server log"
        subprotocols = self.scope.get("subprotocols") or []
        if len(subprotocols) != 2 or subprotocols[0] != "bokeh":
            return "expected the subprotocols ['bokeh', <token>]"
        headers = dict(self.scope.get("headers", []))
        host = headers.get(b"host", b"").decode("latin-1")
        if not security.host_allowed(host):
            return f"Host {host!r} is not in ALLOWED_HOSTS"
        origin_header = headers.get(b"origin")
        origin = origin_header.decode("latin-1") if origin_header is not None else None
        if not security.origin_allowed(origin):
            return f"origin {origin!r} is not allowed; {security.refusal_hint(origin)}"
        return None

    async def websocket_receive(self, event: dict[str, Any]) -> None:
        fragment = event.get("text")
        if fragment is None:
            fragment = event.get("bytes")
        if fragment is None:
            return
        if self.client is not None:
            await self.client.feed(fragment)
        elif self.relay is not None and not self.relay.ended:
            try:
                await self.relay.forward(fragment)
            except Exception as exc:  # the channel layer (Redis) is unreachable, or the owner's channel is full
                await self._end_relay(exc)

    async def revoke(self, reason: str = "Signed out") -> None:
        """The user signed out or was deactivated, or the connection's bearer token was revoked:
        the session closes (code 4008, ``reason``), hooks run."""
        if self.relay is not None:
            await self.relay.discard_session(reason)
            return
        session = self.client.session if self.client is not None else None
        if session is None:
            return
        logger.info("Closing session %r: %s", session.id, reason)
        await runtime.app(self._app_name).discard(session, reason=reason, close_code=CloseCode.ACCESS_REVOKED)

    async def websocket_disconnect(self, event: dict[str, Any]) -> None:
        unregister_connection(self)
        if self.relay is not None:
            await self.relay.closed()
        if self.client is not None:
            session = self.client.session
            self.client.detach()
            logger.info("WebSocket closed for session %r (code %s)", session.id if session else None, event.get("code"))
        raise StopConsumer()

    # Transport, for the session layer ------------------------------------------

    async def send_frames(self, frames: Iterable[str | bytes]) -> None:
        async with self._wire_lock:
            if SEND_FRAMES_EXTENSION in (self.scope.get("extensions") or {}):
                # One trip through Channels and daphne per message instead of one per frame.
                await self.send({"type": SEND_FRAMES_EXTENSION, "frames": list(frames)})
                return
            for frame in frames:
                if isinstance(frame, bytes):
                    await self.send({"type": "websocket.send", "bytes": frame})
                else:
                    await self.send({"type": "websocket.send", "text": frame})

    async def close_connection(self, code: int, reason: str) -> None:
        # A close frame's reason may hold at most 123 bytes of UTF-8.
        reason = reason.encode("utf-8")[:123].decode("utf-8", "ignore")
        async with self._wire_lock:
            await self.send({"type": "websocket.close", "code": int(code), "reason": reason})


class NotFoundConsumer(AsyncConsumer):
    """Refuses (HTTP 403) WebSocket upgrades on paths no route serves, instead of a 500."""

    async def websocket_connect(self, event: dict[str, Any]) -> None:
        logger.info("Refused WebSocket for %r: no such endpoint", self.scope.get("path"))
        await self.send({"type": "websocket.close"})

    async def websocket_disconnect(self, event: dict[str, Any]) -> None:
        raise StopConsumer()

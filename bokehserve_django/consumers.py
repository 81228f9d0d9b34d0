"""Carries one Bokeh session connection over a WebSocket: handshake, frames, replies, close.

Thin: it checks the upgrade (subprotocol, origin, host, token), hands frames to the
protocol layer and messages to the session layer, and turns failures into close codes.
Reads settings only through ``conf``; knows nothing of how sessions are stored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from bokeh.protocol.exceptions import MessageError, ProtocolError, ValidationError
from bokeh.server.session import ServerSession
from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer

from asgiref.sync import sync_to_async

from . import registry, security, signing
from .auth import note_revocation, user_for_websocket, user_group
from .conf import bokeh_settings
from .exceptions import AppLoadError, AppNotRegistered, InvalidToken, SessionRefused
from .protocol import CloseCode, FrameReceiver, MessageTooBig, error_message
from .requests import from_websocket_scope
from .sessions import SessionConnection, runtime

__all__ = ("BokehConsumer",)

logger = logging.getLogger(__name__)

#: Bokeh message type -> ServerSession handler (all run under the document lock).
_SESSION_HANDLERS = {
    "PULL-DOC-REQ": ServerSession.pull,
    "PUSH-DOC": ServerSession.push,
    "PATCH-DOC": ServerSession.patch,
}


class BokehConsumer(AsyncConsumer):
    """The WebSocket at ``/<app>/ws``."""

    connection: SessionConnection | None = None

    async def websocket_connect(self, event: dict[str, Any]) -> None:
        self.connection = None
        self._closing = False
        app_name = self.scope["url_route"]["kwargs"]["app_name"]
        refusal = self._refusal_reason(app_name)
        if refusal is not None:
            logger.warning("Refused WebSocket for app %r: %s", app_name, refusal)
            await self.send({"type": "websocket.close"})
            return
        token = self.scope["subprotocols"][1]
        entry = registry.get_app(app_name)
        try:
            info = signing.read_token(token)
            user = await user_for_websocket(self.scope.get("user"), info.payload)
            request = from_websocket_scope(self.scope, info.payload, user)
            if not entry.access.is_public and not await sync_to_async(entry.access.allows_sync)(user, request):
                raise SessionRefused(f"user {getattr(user, 'pk', None)} has no access ({entry.access.description})")
            app_sessions = runtime.app(app_name)
            session = await app_sessions.get_or_create(info.session_id, request, token, info.payload)
        except (InvalidToken, SessionRefused) as exc:
            logger.warning("Refused WebSocket for app %r: %s", app_name, exc)
            await self.send({"type": "websocket.close"})
            return
        except AppLoadError as exc:
            logger.error("Refused WebSocket for app %r: the app failed to load:\n%s", app_name, exc.details)
            await self.send({"type": "websocket.close"})
            return
        self._receiver = FrameReceiver(
            max_buffers=bokeh_settings.MAX_BUFFERS_PER_MESSAGE,
            max_message_bytes=bokeh_settings.WEBSOCKET_MAX_MESSAGE_SIZE,
        )
        await self.send({"type": "websocket.accept", "subprotocol": "bokeh"})
        self.connection = SessionConnection(session, transport=self)
        self._app_name = app_name
        self._user_group = None
        if getattr(user, "is_authenticated", False) and self.channel_layer is not None:
            # Sign-out anywhere reaches this connection through the user's group.
            self._user_group = user_group(user.pk)
            await self.channel_layer.group_add(self._user_group, self.channel_name)
        logger.info("WebSocket opened for session %r of app %r", session.id, app_name)
        await self.connection.send_message(self.connection.protocol.create("ACK"))

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
        if self._closing or self.connection is None or not self.connection.attached:
            return  # we decided to close: ignore frames still queued
        fragment = event.get("text")
        if fragment is None:
            fragment = event.get("bytes")
        if fragment is None:
            return
        try:
            message = self._receiver.consume(fragment)
        except MessageTooBig as exc:
            await self._close(CloseCode.MESSAGE_TOO_BIG, str(exc))
            return
        except (MessageError, ProtocolError, ValidationError) as exc:
            await self._close(CloseCode.PROTOCOL_ERROR, f"Protocol error: {exc}")
            return
        if message is None:
            return
        try:
            await self._handle(message)
        except Exception:
            logger.error("Internal error handling %s", message.msgtype, exc_info=True)
            await self._close(CloseCode.INTERNAL_ERROR, "Internal server error")

    async def _handle(self, message: Any) -> None:
        connection = self.connection
        assert connection is not None
        if message.msgtype == "SERVER-INFO-REQ":
            await connection.send_message(connection.protocol.create("SERVER-INFO-REPLY", message.header["msgid"]))
            return
        handler = _SESSION_HANDLERS[message.msgtype]
        try:
            reply = await handler(message, connection)
        except Exception as exc:
            logger.error(
                "Error handling %s for session %r", message.msgtype, connection.session.id, exc_info=True
            )
            reply = error_message(connection.protocol, message.header["msgid"], f"{type(exc).__name__}: server error")
        if reply is not None and connection.attached:
            await connection.send_message(reply)

    async def _close(self, code: CloseCode, reason: str) -> None:
        self._closing = True
        session_id = self.connection.session.id if self.connection and self.connection.attached else None
        logger.warning("Closing WebSocket of session %r: %s (%d)", session_id, reason, code)
        await self.close_connection(code, reason)

    async def bokehserve_revoke(self, event: dict[str, Any]) -> None:
        """The user signed out or was deactivated: their session closes, hooks run."""
        note_revocation(event["user"], event["at"])
        connection = self.connection
        if connection is None or not connection.attached:
            return
        session = connection.session
        logger.info("Closing session %r: its user signed out or lost access", session.id)
        await runtime.app(self._app_name).discard(
            session, reason="Signed out", close_code=CloseCode.ACCESS_REVOKED
        )

    async def websocket_disconnect(self, event: dict[str, Any]) -> None:
        if getattr(self, "_user_group", None) and self.channel_layer is not None:
            await self.channel_layer.group_discard(self._user_group, self.channel_name)
        if self.connection is not None:
            session_id = self.connection.session.id if self.connection.attached else None
            self.connection.detach()
            logger.info("WebSocket closed for session %r (code %s)", session_id, event.get("code"))
        raise StopConsumer()

    # Transport, for SessionConnection ------------------------------------------

    async def send_frames(self, frames: Iterable[str | bytes]) -> None:
        for frame in frames:
            if isinstance(frame, bytes):
                await self.send({"type": "websocket.send", "bytes": frame})
            else:
                await self.send({"type": "websocket.send", "text": frame})

    async def close_connection(self, code: int, reason: str) -> None:
        self._closing = True
        await self.send({"type": "websocket.close", "code": int(code), "reason": reason[:120]})

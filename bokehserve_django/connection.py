"""Drives the Bokeh protocol of one client connection: frames in, messages handled, replies out.

Used by the WebSocket consumer for local sessions and by the cluster relay for sessions
whose WebSocket landed on another process. Knows no Channels and no Django request.
"""

from __future__ import annotations

import logging
from typing import Any

from bokeh.protocol.exceptions import MessageError, ProtocolError, ValidationError
from bokeh.server.session import ServerSession

from . import metrics
from .protocol import CloseCode, FrameReceiver, MessageTooBig, error_message
from .sessions import BokehSession, SessionConnection, Transport

__all__ = ("ClientConnection",)

logger = logging.getLogger(__name__)

#: Bokeh message type -> ServerSession handler (all run under the document lock).
_SESSION_HANDLERS = {
    "PULL-DOC-REQ": ServerSession.pull,
    "PUSH-DOC": ServerSession.push,
    "PATCH-DOC": ServerSession.patch,
}


class ClientConnection:
    """One client attached to a session: assembles its frames and answers its messages.

    ``feed`` never raises for bad input: it closes the transport with a 4000-4999 code
    and a reason, and ignores frames that arrive after that decision.
    """

    def __init__(self, session: BokehSession, transport: Transport, max_buffers: int, max_message_bytes: int) -> None:
        self._transport = transport
        self._receiver = FrameReceiver(max_buffers=max_buffers, max_message_bytes=max_message_bytes)
        self.connection = SessionConnection(session, transport)
        self.closing = False
        self._errors_logged = 0

    @property
    def session(self) -> BokehSession | None:
        return self.connection.session if self.connection.attached else None

    async def open(self) -> None:
        """Greet the client: the first message must be ACK."""
        await self.connection.send_message(self.connection.protocol.create("ACK"))

    async def feed(self, fragment: str | bytes) -> None:
        """Take one frame from the client."""
        if self.closing or not self.connection.attached:
            return  # we decided to close: frames still queued are ignored
        try:
            message = self._receiver.consume(fragment)
        except MessageTooBig as exc:
            await self.close(CloseCode.MESSAGE_TOO_BIG, str(exc))
            return
        except (MessageError, ProtocolError, ValidationError) as exc:
            await self.close(CloseCode.PROTOCOL_ERROR, f"Protocol error: {exc}")
            return
        if message is None:
            return
        metrics.message_received(message)
        try:
            await self._handle(message)
        except Exception:
            logger.error("Internal error handling %s", message.msgtype, exc_info=True)
            await self.close(CloseCode.INTERNAL_ERROR, "Internal server error")

    async def _handle(self, message: Any) -> None:
        connection = self.connection
        if message.msgtype == "SERVER-INFO-REQ":
            await connection.send_message(connection.protocol.create("SERVER-INFO-REPLY", message.header["msgid"]))
            return
        handler = _SESSION_HANDLERS[message.msgtype]
        try:
            reply = await handler(message, connection)
        except Exception as exc:
            # The first failures get a traceback; a client repeating a bad message does not
            # flood the log with them.
            self._errors_logged += 1
            logger.error(
                "Error handling %s for session %r: %s", message.msgtype, connection.session.id, exc,
                exc_info=self._errors_logged <= 3,
            )
            reply = error_message(connection.protocol, message.header["msgid"], f"{type(exc).__name__}: server error")
        if reply is not None and connection.attached:
            await connection.send_message(reply)

    async def close(self, code: int, reason: str) -> None:
        """Decide to close: log once, stop handling frames, tell the transport."""
        if self.closing:
            return
        self.closing = True
        session_id = self.connection.session.id if self.connection.attached else None
        logger.warning("Closing connection of session %r: %s (%d)", session_id, reason, code)
        await self._transport.close_connection(code, reason)

    def detach(self) -> None:
        """The client went away: the session may now expire once unused."""
        self.connection.detach()

"""Assembles Bokeh protocol messages from WebSocket frames, with limits, and names our close codes.

No Django or Channels imports; see tests/unit/test_layering.py.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator
from typing import Any

from bokeh.protocol import Protocol
from bokeh.protocol.exceptions import MessageError, ProtocolError, ValidationError
from bokeh.protocol.message import Message

__all__ = (
    "SEND_FRAMES_EXTENSION",
    "SERVER_MESSAGE_TYPES",
    "CloseCode",
    "FrameReceiver",
    "MessageSplitter",
    "ProtocolError",
    "error_message",
    "message_frames",
)

#: Message types a client may send to the server (PROTOCOL.md 4.4).
SERVER_MESSAGE_TYPES = frozenset({"PULL-DOC-REQ", "PUSH-DOC", "PATCH-DOC", "SERVER-INFO-REQ"})

#: ASGI extension (``scope["extensions"]``) of servers that take a whole Bokeh message in one
#: send: ``{"type": SEND_FRAMES_EXTENSION, "frames": [str | bytes, ...]}``, each str a text
#: frame and each bytes a binary frame, written back to back. BokehDaphneServer offers it;
#: under any other ASGI server the consumer sends one ``websocket.send`` per frame.
SEND_FRAMES_EXTENSION = "bokehserve.websocket.send_frames"


class CloseCode(enum.IntEnum):
    """WebSocket close codes we send. Bokeh's own 10000/10001 are refused by autobahn (daphne).

    BokehJS reconnects after a close unless the code is one it treats as final; clients
    see the reason text next to the code.
    """

    #: The server is shutting down (standard "going away").
    GOING_AWAY = 1001
    #: A message broke the Bokeh protocol (bad JSON, unknown type, frames out of order).
    PROTOCOL_ERROR = 4001
    #: The server failed while handling a message.
    INTERNAL_ERROR = 4002
    #: A message was larger than the configured limits.
    MESSAGE_TOO_BIG = 4003
    #: The session was destroyed (expired, or the server discarded it).
    SESSION_DESTROYED = 4004
    #: The session's owner process went away (cluster relay).
    OWNER_LOST = 4005
    #: The link to the process holding the session broke (a Redis restart): the session is
    #: still alive, so BokehJS's reconnect reaches it with its state.
    RELAY_INTERRUPTED = 4006
    #: The user signed out or lost access while connected.
    ACCESS_REVOKED = 4008
    #: The cluster's Redis is unreachable, so this process cannot tell where the session
    #: lives; BokehJS's reconnect retries.
    CLUSTER_UNAVAILABLE = 4009
    #: The session this page was built from no longer exists (its process died, it was
    #: reaped, or it could not be restored): the page must reload to get a new one.
    SESSION_GONE = 4010
    #: The upgrade's ``Authorization: Bearer`` token was refused (expired, revoked, for
    #: another app); the reason says which. Only headless clients send one.
    BEARER_TOKEN_REFUSED = 4011
    #: An administrator closed the session (Django admin, "Live Bokeh sessions"); the reason
    #: is theirs. The page shows it and does not reload by itself (recover.js).
    CLOSED_BY_ADMIN = 4012


class FrameReceiver:
    """Turns WebSocket frames into complete bokeh ``Message`` objects.

    Checks what bokeh's Receiver leaves open: the header must be a JSON object with string
    ``msgid``/``msgtype``, the type must be one a client may send, ``num_buffers`` must be
    a small non-negative integer, and the bytes of one message are capped. Any violation
    raises ``ProtocolError`` (or ``MessageTooBig``); the caller closes the connection.
    """

    def __init__(self, max_buffers: int, max_message_bytes: int) -> None:
        self._protocol = Protocol()
        self._max_buffers = max_buffers
        self._max_message_bytes = max_message_bytes
        self._reset()

    def _reset(self) -> None:
        self._fragments: list[str] = []
        self._message: Message[Any] | None = None
        self._expected_buffers = 0
        self._buffer_id: str | None = None
        self._bytes = 0

    def consume(self, fragment: str | bytes) -> Message[Any] | None:
        """Feed one frame; return the message it completes, or None if more frames are due."""
        self._bytes += len(fragment)
        if self._bytes > self._max_message_bytes:
            raise MessageTooBig(f"Message exceeds {self._max_message_bytes} bytes")
        if self._message is None:
            return self._consume_text_part(fragment)
        return self._consume_buffer_part(fragment)

    def _consume_text_part(self, fragment: str | bytes) -> Message[Any] | None:
        if not isinstance(fragment, str):
            raise ValidationError("expected a text frame (header, metadata or content), got a binary frame")
        if not self._fragments:
            self._expected_buffers = self._check_header(fragment)
        self._fragments.append(fragment)
        if len(self._fragments) < 3:
            return None
        header_json, metadata_json, content_json = self._fragments
        try:
            message = self._protocol.assemble(header_json, metadata_json, content_json)
        except (MessageError, ProtocolError, ValidationError):
            raise
        except Exception as exc:
            raise MessageError(f"message could not be assembled: {type(exc).__name__}") from None
        if self._expected_buffers == 0:
            self._reset()
            return message
        self._message = message
        return None

    def _consume_buffer_part(self, fragment: str | bytes) -> Message[Any] | None:
        assert self._message is not None
        if self._buffer_id is None:
            if not isinstance(fragment, str):
                raise ValidationError("expected a buffer header text frame, got a binary frame")
            try:
                header = json.loads(fragment)
            except ValueError:
                raise MessageError("buffer header is not JSON") from None
            if not isinstance(header, dict) or set(header) != {"id"} or not isinstance(header["id"], str):
                raise ValidationError("malformed buffer header; expected {\"id\": <str>}")
            self._buffer_id = header["id"]
            return None
        if not isinstance(fragment, bytes):
            raise ValidationError("expected a binary buffer frame, got a text frame")
        self._message.assemble_buffer({"id": self._buffer_id}, fragment)
        self._buffer_id = None
        if len(self._message.buffers) < self._expected_buffers:
            return None
        message = self._message
        self._reset()
        return message

    def _check_header(self, header_json: str) -> int:
        try:
            header = json.loads(header_json)
        except ValueError:
            raise MessageError("header is not JSON") from None
        if not isinstance(header, dict):
            raise ValidationError("header is not a JSON object")
        msgtype = header.get("msgtype")
        if not isinstance(msgtype, str) or not isinstance(header.get("msgid"), str):
            raise ValidationError("header needs string 'msgid' and 'msgtype'")
        if msgtype not in SERVER_MESSAGE_TYPES:
            raise ProtocolError(f"message type {msgtype[:40]!r} is not expected on the server")
        num_buffers = header.get("num_buffers", 0)
        if isinstance(num_buffers, bool) or not isinstance(num_buffers, int) or num_buffers < 0:
            raise ValidationError("header 'num_buffers' must be a non-negative integer")
        if num_buffers > self._max_buffers:
            raise MessageTooBig(f"message announces {num_buffers} buffers; the limit is {self._max_buffers}")
        return num_buffers


class MessageSplitter:
    """Groups a client's frames into the frames of whole messages, without parsing them.

    The relay sends one channel-layer message per Bokeh message, not one per frame. Only
    the header's ``num_buffers`` is read. A frame that does not look like a valid header
    (or announces more than the limits) is passed on alone at once: the owner's
    ``FrameReceiver`` then refuses it and closes the connection with the right code.
    """

    def __init__(self, max_buffers: int, max_message_bytes: int) -> None:
        self._max_buffers = max_buffers
        self._max_message_bytes = max_message_bytes
        self._frames: list[str | bytes] = []
        self._expected = 0
        self._bytes = 0

    def push(self, fragment: str | bytes) -> list[str | bytes] | None:
        """Take one frame; return the frames of the message it completes, or None."""
        if not self._frames:
            self._expected = self._frames_announced(fragment)
            if self._expected is None:
                return [fragment]
        self._frames.append(fragment)
        self._bytes += len(fragment)
        if len(self._frames) < self._expected and self._bytes <= self._max_message_bytes:
            return None
        frames, self._frames, self._bytes = self._frames, [], 0
        return frames

    def _frames_announced(self, fragment: str | bytes) -> int | None:
        if not isinstance(fragment, str):
            return None
        try:
            header = json.loads(fragment)
        except ValueError:
            return None
        num_buffers = header.get("num_buffers", 0) if isinstance(header, dict) else None
        if isinstance(num_buffers, bool) or not isinstance(num_buffers, int) or not 0 <= num_buffers <= self._max_buffers:
            return None
        return 3 + 2 * num_buffers


class MessageTooBig(ProtocolError):
    """Raised when a message's frames or buffers exceed the configured limits."""


def message_frames(message: Message[Any]) -> Iterator[str | bytes]:
    """The frames of ``message`` in wire order: header, metadata, content, then buffer pairs."""
    yield message.header_json
    yield message.metadata_json
    yield message.content_json
    for buffer in message.buffers:
        yield json.dumps(buffer.ref)
        yield buffer.to_bytes()


def error_message(protocol: Protocol, request_id: str, text: str) -> Message[Any]:
    """An ERROR reply with a short reason and no server traceback (bokeh adds one from sys.exc_info)."""
    message = protocol.create("ERROR", request_id, text)
    message.content["traceback"] = None
    message._content_json = None
    return message

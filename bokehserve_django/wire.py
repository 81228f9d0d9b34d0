"""Puts WebSocket frames on a TCP socket without joining or copying their payloads.

An 8 MB binary update (one numpy column) used to be copied three times between bokeh's
buffer and the socket, all on the event loop:

1. autobahn's ``sendFrame`` joins the frame header and the payload into a new bytes object;
2. Twisted's ``FileDescriptor.doWrite`` joins every write queued since its last turn (the
   message's text frames and that payload) into one bytes object (``b"".join``), and
   again (``_concatenate``) whenever what is left of it is below ``SEND_LIMIT``;
3. it then sends at most ``SEND_LIMIT`` (128 KiB) per loop turn, so 8 MB takes some 60
   turns of the event loop, each a ``select`` and a Python call.

``websocket_frame_header`` lets the WebSocket protocol write a frame as two writes (header,
then the payload object itself), and ``GatherWriteServer`` is Twisted's TCP connection with
a ``doWrite`` that hands the queued buffers to the kernel as they are, in one
``sendmsg`` (a gather write) per turn, with no size cap but the socket's own buffer.
Twisted's buffer bookkeeping (``dataBuffer``/``offset``/``_tempDataBuffer``/``_tempDataLen``)
keeps its meaning, so producers, ``loseConnection`` and TLS on top work unchanged.

No Django or Channels here.
"""

from __future__ import annotations

import struct
from errno import ENOBUFS, EWOULDBLOCK
from typing import Any

from twisted.internet import main, tcp
from twisted.python.util import untilConcludes

__all__ = ("EAGER_WRITE_BYTES", "MAX_GATHER_BUFFERS", "GatherWriteServer", "websocket_frame_header")

#: Buffers handed to one sendmsg(): well below Linux's IOV_MAX (1024); a message's
#: frames are 3 + 2 per buffer, so one call takes many messages.
MAX_GATHER_BUFFERS = 64
#: A frame payload at least this large is handed to the kernel as soon as it is queued
#: (``GatherWriteServer.send_now``); smaller ones wait for the loop's turn, so that the
#: frames of one message (and of messages sent together) leave in one system call.
EAGER_WRITE_BYTES = 64 * 1024


def websocket_frame_header(opcode: int, length: int, rsv: int = 0) -> bytes:
    """The header of one final, unmasked frame (RFC 6455 5.2): what a server sends."""
    first = 0x80 | (rsv & 0x07) << 4 | (opcode & 0x0F)
    if length <= 125:
        return struct.pack("!BB", first, length)
    if length <= 0xFFFF:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


class GatherWriteServer(tcp.Server):
    """Twisted's server-side TCP connection, writing its queued buffers without copying them."""

    def doWrite(self) -> Any:
        if not self._send_some():
            return main.CONNECTION_LOST
        if self.offset < len(self.dataBuffer) or self._tempDataLen:
            return None
        # Everything is written: as FileDescriptor.doWrite's ending.
        self.dataBuffer = b""
        self.offset = 0
        self.stopWriting()
        if self.producer is not None and ((not self.streamingProducer) or self.producerPaused):
            self.producerPaused = False
            self.producer.resumeProducing()
        elif self.disconnecting:
            return self._postLoseConnection()
        elif self._writeDisconnecting:
            self._writeDisconnected = True
            return self._closeWriteConnection()
        return None

    def send_now(self) -> None:
        """Hand what is queued to the kernel now instead of on the event loop's next turn.

        For a large payload just queued: the client starts receiving it while the loop
        finishes the message (and whatever else it has to do), as Tornado's and asyncio's
        transports write at once. Only the sending: the reactor's next ``doWrite`` still
        does the bookkeeping (stop writing, resume a producer, a pending close) and
        reports a broken connection.
        """
        if self.connected and not self.disconnected:
            self._send_some()

    def _send_some(self) -> bool:
        """One gather write of what is queued; False if the connection is broken."""
        buffers: list[Any] = []
        if self.offset < len(self.dataBuffer):
            buffers.append(memoryview(self.dataBuffer)[self.offset :])
        buffers.extend(self._tempDataBuffer[: MAX_GATHER_BUFFERS - len(buffers)])
        if not buffers:
            return True
        try:
            sent = untilConcludes(self.socket.sendmsg, buffers)
        except OSError as error:
            # As tcp.Connection.writeSomeData: a full socket buffer is "nothing sent".
            if error.args[0] not in (EWOULDBLOCK, ENOBUFS):
                return False
            sent = 0
        self._consume(sent)
        return True

    def _consume(self, sent: int) -> None:
        """Drop ``sent`` bytes from the front of the buffers; a partly sent one becomes ``dataBuffer``."""
        left = len(self.dataBuffer) - self.offset
        if left:
            if sent < left:
                self.offset += sent
                return
            sent -= left
            self.dataBuffer = b""
            self.offset = 0
        done = 0
        pending = self._tempDataBuffer
        while done < len(pending):
            size = len(pending[done])
            if size > sent:
                if sent:
                    self.dataBuffer = pending[done]
                    self.offset = sent
                    self._tempDataLen -= size
                    done += 1
                break
            sent -= size
            self._tempDataLen -= size
            done += 1
        del pending[:done]

"""Runs daphne with what Bokeh needs: close reasons on the wire, empty frames, orderly shutdown.

daphne 4.2 drops the ``reason`` of an ASGI ``websocket.close`` message (BokehJS and
``bokeh.client`` users need it to know why a connection ended) and silently skips
zero-length frames (an empty numpy column is one). ``BokehDaphneServer`` swaps in a
WebSocket protocol that sends both. Production deployments use
it through ``python -m bokehserve_django.daphne`` (daphne's CLI with this server).
"""

from __future__ import annotations

import asyncio
from typing import Any

from autobahn.util import encode_truncate
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol

__all__ = ("BokehDaphneServer", "BokehWebSocketProtocol")


def _sendable_close_code(code: int) -> bool:
    """Codes an endpoint may put in a close frame: 1004-1006 and 1015 are reserved for reporting."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class BokehWebSocketProtocol(WebSocketProtocol):
    """daphne's WebSocket protocol, sending the close reason the application gives."""

    def handle_reply(self, message: dict[str, Any]) -> None:
        if message.get("type") == "websocket.send" and self.state == self.STATE_OPEN:
            # daphne skips empty payloads ("if message.get('bytes')"), but an empty numpy
            # column is a 0-byte binary frame that BokehJS waits for.
            data = message.get("bytes")
            if data is not None and message.get("text") is None:
                self.sendMessage(data, True)
                return
            text = message.get("text")
            if text is not None and data is None:
                self.sendMessage(text.encode("utf8"), False)
                return
        if message.get("type") == "websocket.close" and self.state != self.STATE_CONNECTING:
            code = int(message.get("code") or 1000)
            if not _sendable_close_code(code):
                raise ValueError(f"WebSocket close code {code} may not be sent (RFC 6455 section 7.4)")
            reason = message.get("reason") or None
            # autobahn's sendClose() accepts only 1000 and 3000-4999, so 1001 ("going away",
            # what a stopping server sends) raised there and no close frame was ever sent:
            # clients saw 1006. sendCloseFrame() is the same close handshake without that
            # filter; the code was checked above. A close reason may hold at most 123 UTF-8 bytes.
            self.sendCloseFrame(
                code=code, reasonUtf8=encode_truncate(reason, 123) if reason else None, isReply=False
            )
            return
        super().handle_reply(message)


class BokehDaphneServer(Server):
    """daphne's Server using BokehWebSocketProtocol for every WebSocket."""

    @property
    def ws_factory(self) -> Any:
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory: Any) -> None:
        # daphne builds its factory inside run(); this is the one place to swap the protocol.
        factory.protocol = BokehWebSocketProtocol
        # On a frame over the size limit, send a close frame (1009, with a reason) rather
        # than dropping the TCP connection, so the client learns why.
        factory.setProtocolOptions(failByDrop=False)
        self._ws_factory = factory

    def kill_all_applications(self) -> Any:
        """Destroy sessions first (hooks run, clients get a close frame), then stop consumers."""
        from twisted.internet.defer import Deferred

        from .cluster.lifecycle import stop_process

        shutdown = Deferred.fromFuture(asyncio.ensure_future(stop_process()))
        shutdown.addErrback(lambda failure: failure.printTraceback())
        shutdown.addBoth(lambda _: super(BokehDaphneServer, self).kill_all_applications())
        return shutdown

"""Runs daphne with what Bokeh needs: close reasons on the wire, empty frames, orderly shutdown.

daphne 4.2 drops the ``reason`` of an ASGI ``websocket.close`` message (BokehJS and
``bokeh.client`` users need it to know why a connection ended) and silently skips
zero-length frames (an empty numpy column is one). ``BokehDaphneServer`` swaps in a
WebSocket protocol that sends both. Production deployments use
it through ``python -m bokehserve_django.daphne`` (daphne's CLI with this server).

It also owns how the process stops. Twisted's own SIGTERM/SIGINT handlers call
``reactor.stop()`` at once, which keeps the ports listening while the "before shutdown"
triggers run and then drops every transport (``disconnectAll``) without writing what is
still buffered, so close frames queued during the stop never reached the clients. Here a
signal instead (1) stops listening, (2) runs ``stop_process()`` (the drain), bounded by
``DRAIN_TIMEOUT`` plus a grace period, (3) waits until the WebSockets' connections are
gone, so the close frames are on the wire, and only then (4) stops the reactor, where daphne cancels its
application instances. A second signal closes every WebSocket at once, which ends the
drain. A watchdog thread ends the process if the stop still hangs past its bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import functools
import io
import ipaddress
import logging
import os
import pprint
import signal
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import autobahn.websocket.protocol as autobahn_protocol
from autobahn.util import encode_truncate
from autobahn.websocket.compress import (
    PerMessageDeflate,
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import reactor, tcp
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import LogLevel, eventAsText, globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.http import HTTPChannel

from .inbox import Inbox
from .protocol import SEND_FRAMES_EXTENSION, CloseCode
from .upgrades import UpgradeSniffingFactory
from .wire import EAGER_WRITE_BYTES, GatherWriteServer, websocket_frame_header

__all__ = ("BokehDaphneServer", "BokehWebSocketProtocol", "add_drain_timeout_argument", "apply_xheaders")

logger = logging.getLogger(__name__)

#: Seconds stop_process() may take beyond DRAIN_TIMEOUT (destroying the sessions left,
#: on_server_unloaded, leaving the cluster) before the stop goes on without it.
STOP_PROCESS_GRACE = 2
#: Seconds to wait for the WebSockets' connections to end once every one has its close frame:
#: a client answers within milliseconds, and one that stays silent meets autobahn's close
#: handshake timeout (1 s, quantized to 0-1 s), which ends the connection after the close
#: frame is written (BokehWebSocketProtocol.onCloseHandshakeTimeout).
CLOSE_HANDSHAKE_WAIT = 2
#: Seconds after the signal, beyond DRAIN_TIMEOUT, at which the watchdog ends the process:
#: the two waits above plus a second for daphne to cancel its application instances.
STOP_GRACE = STOP_PROCESS_GRACE + CLOSE_HANDSHAKE_WAIT + 1
#: Seconds a connection ended by the close handshake timeout may take to write what it still
#: holds (our close frame) and see the peer close before it is aborted: only a peer that reads
#: nothing, or never closes, takes that long. A stop does not wait for it (the wait above is
#: shorter; stopping the reactor ends such connections).
CLOSE_LINGER_TIMEOUT = 5
#: The close reason for WebSockets the server closes itself (the same words the session
#: runtime uses when it destroys sessions at shutdown).
SHUTDOWN_REASON = "Server is shutting down"


def _sendable_close_code(code: int) -> bool:
    """Codes an endpoint may put in a close frame: 1004-1006 and 1015 are reserved for reporting."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class _LeveledPerMessageDeflate(PerMessageDeflate):
    """permessage-deflate compressing at a chosen zlib level (autobahn always uses zlib's default)."""

    def __init__(self, *args: Any, compression_level: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.compression_level = compression_level

    def start_compress_message(self) -> None:
        # As PerMessageDeflate.start_compress_message (server side), with our level.
        if self._compressor is None or self.server_no_context_takeover:
            self._compressor = zlib.compressobj(
                self.compression_level, zlib.DEFLATED, -self.server_max_window_bits, self.mem_level
            )


class _FormattedWhenLogged:
    """``pprint.pformat(value)``, computed when a log line is formatted (``str()``/``format()``)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        return pprint.pformat(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


@contextlib.contextmanager
def _pformat_when_logged() -> Iterator[None]:
    """While autobahn sets up a connection, its ``pformat`` defers the work to the log line.

    Only for ``_connectionMade``, where autobahn's one use of it is a log argument (elsewhere,
    ``Timings.__str__`` must return a str). Loop thread only, as all of autobahn here.
    """
    original = autobahn_protocol.pformat
    autobahn_protocol.pformat = _FormattedWhenLogged
    try:
        yield
    finally:
        autobahn_protocol.pformat = original


_TWISTED_ERROR_LEVELS = frozenset({LogLevel.error, LogLevel.critical})


def _log_twisted_error(event: dict[str, Any]) -> None:
    """A Twisted log observer: errors (with their traceback) into this module's log, the rest dropped.

    daphne sends Twisted's whole log nowhere unless its verbosity is above 1, errors too, so
    an exception raised in a Twisted, autobahn or daphne callback (Twisted catches it and
    logs it) left no trace at all.
    """
    if event.get("log_level") not in _TWISTED_ERROR_LEVELS and "log_failure" not in event:
        return
    text = eventAsText(event, includeTraceback=True, includeTimestamp=False, includeSystem=False)
    logger.error("Twisted: %s", text.rstrip())


class _OpenedRequest:
    """What daphne still reads of an open WebSocket's upgrade request: its path, for
    ``log_action`` in ``onOpen`` and ``onClose``."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


class BokehWebSocketProtocol(WebSocketProtocol):
    """daphne's WebSocket protocol, sending the close reason the application gives."""

    #: Closing after a close handshake timeout (see onCloseHandshakeTimeout), and the
    #: abortConnection() that bounds it.
    _lingering = False
    _linger_bound: Any = None

    def _connectionMade(self) -> None:
        # autobahn formats its whole configuration (some 30 options) with pprint.pformat for a
        # debug log line on every new connection, whether debug logging is on or not: ~0.15 ms
        # of a WebSocket handshake. The line gets the same text, formatted only if written.
        with _pformat_when_logged():
            super()._connectionMade()

    def onOpen(self) -> None:
        level = getattr(self.factory, "bokeh_compression_level", None)
        deflate = self._perMessageCompress
        if level is not None and type(deflate) is PerMessageDeflate:
            # autobahn builds the extension object from the accepted offer with no way to pass
            # a zlib level; nothing has been compressed yet, so swap in one that has it.
            leveled = _LeveledPerMessageDeflate(
                deflate._is_server, deflate.server_no_context_takeover, deflate.client_no_context_takeover,
                deflate.server_max_window_bits, deflate.client_max_window_bits, deflate.mem_level,
                deflate.max_message_size, compression_level=level,
            )
            self._perMessageCompress = leveled
            self.websocket_extensions_in_use = [
                leveled if extension is deflate else extension for extension in self.websocket_extensions_in_use
            ]
        self._release_handshake_state()
        super().onOpen()

    def _release_handshake_state(self) -> None:
        """Let go of what only the opening handshake needed, which would otherwise live as long as the WebSocket.

        - The upgrade's Twisted HTTP channel and request, which stay registered as the
          transport's producer after daphne hands the transport over. Their request never
          finishes, so the channel's pause/resume do nothing for the WebSocket
          (``HTTPChannel._handlingRequest`` stays true): unregistering it changes no flow control.
          (Under TLS the transport is a wrapper that keeps its producer elsewhere; left as is.)
        - autobahn's parsed request headers, raw request bytes and offered subprotocols (the
          session token among them), and daphne's ``ConnectionRequest``: read only while the
          handshake is processed (the ASGI scope has its own lists of both), except the
          request's path, which daphne's ``onOpen`` and ``onClose`` log. Without it both
          raise, and the error is lost: autobahn skips the rest of the handshake's success
          (the ``is_open`` future, data that came with the upgrade), and Twisted formats a
          traceback, twice per connection, for a log that goes nowhere.

        About 4 KiB per open session.
        """
        transport = self.transport
        if isinstance(getattr(transport, "producer", None), HTTPChannel):
            transport.unregisterProducer()
        self.http_headers = {}
        self.http_request_data = b""
        self.websocket_protocols = []
        self.request = _OpenedRequest(self.request.path)

    def sendMessage(
        self,
        payload: bytes,
        isBinary: bool = False,
        fragmentSize: int | None = None,
        sync: bool = False,
        doNotCompress: bool = False,
    ) -> None:
        """As autobahn's, but an unfragmented, uncompressed frame goes out as two writes.

        autobahn's ``sendFrame`` joins the header and the payload into one new bytes object,
        which for an 8 MB buffer is an 8 MB copy on the event loop. Here the header and the
        payload object itself are queued, and the transport (``wire.GatherWriteServer``)
        writes both without joining them. Everything else (compression, fragmentation,
        autobahn's synchronous or chopped writes, frame logging, the size limit's error)
        takes autobahn's own path.
        """
        length = len(payload)
        if (
            self.state != self.STATE_OPEN
            or (self._perMessageCompress is not None and not doNotCompress)
            or fragmentSize is not None
            or self.autoFragmentSize > 0
            or sync
            or self.send_queue
            or self.maskServerFrames
            or 0 < self.maxMessagePayloadSize < length
            or self.logFrames
            or self.logOctets
            or self.trackedTimings
            or type(payload) is not bytes
        ):
            super().sendMessage(payload, isBinary, fragmentSize, sync, doNotCompress)
            return
        header = websocket_frame_header(2 if isBinary else 1, length)
        stats = self.trafficStats
        stats.outgoingWebSocketMessages += 1
        stats.outgoingWebSocketFrames += 1
        stats.outgoingOctetsAppLevel += length
        stats.outgoingOctetsWebSocketLevel += length
        stats.outgoingOctetsWireLevel += len(header) + length
        if length:
            self.transport.writeSequence((header, payload))
            if length >= EAGER_WRITE_BYTES and isinstance(self.transport, GatherWriteServer):
                self.transport.send_now()
        else:
            self.transport.write(header)

    def handle_reply(self, message: dict[str, Any]) -> None:
        if message.get("type") == SEND_FRAMES_EXTENSION:
            # A whole Bokeh message (protocol.SEND_FRAMES_EXTENSION): its frames back to back.
            # On a connection that is no longer open, the first sendMessage raises, as for
            # a websocket.send.
            for frame in message["frames"]:
                if isinstance(frame, str):
                    self.sendMessage(frame.encode("utf8"), False)
                else:
                    self.sendMessage(frame, True)
            return
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

    def onCloseHandshakeTimeout(self) -> None:
        """The client did not answer our close frame in time: end the connection, after that frame.

        autobahn drops the connection here with abortConnection(), which discards what the
        transport still buffers and resets the TCP connection (SO_LINGER 0). Its 1 s timeout
        is quantized to whole seconds (txaio's batched timer: ``int(now + delay)``), so it
        fires 0-1 s after the close frame was *queued* (23 ms was seen), and at shutdown the
        drain queues the close frames and then keeps the loop busy (on_session_destroyed
        hooks, destroying documents, a gc.collect()), so the timeout is often due before the
        frame was even written: the client cannot have answered. Two ways the frame was then
        lost (the client saw 1006):

        - TLS (runbokeh --ssl-certfile): the frame still sat in BufferingTLSTransport's
          small-write aggregator, which a callLater(0) flushes into the TCP buffer in the same
          loop iteration as this timeout; the abort discarded it.
        - Plain TCP behind nginx (test_rolling_restart.py): the frame was written (the
          kernel's send queue was empty at the abort: nginx's socket had it), the RST
          followed within a millisecond, and nginx closed the client's side without passing
          the frame on.

        So the same bookkeeping as autobahn's, but a lingering close (``_closeConnection``).
        """
        self.closeHandshakeTimeoutCall = None
        if self.state == self.STATE_CLOSED:
            return
        self.wasClean = False
        self.wasNotCleanReason = "WebSocket closing handshake timeout (peer did not finish the closing handshake in time)"
        self.wasCloseHandshakeTimeout = True
        self._lingering = True
        self.dropConnection(abort=False)

    def _closeConnection(self, abort: bool = False) -> None:
        # autobahn's one place that ends the transport (dropConnection calls it).
        if abort or not self._lingering:
            super()._closeConnection(abort)
            return
        # Write everything still buffered (our close frame), then tell the peer we are done,
        # and keep reading (and discarding) until it closes too, so that nothing it sends
        # meanwhile meets a reset. TLS: loseConnection() flushes the aggregator, sends
        # close_notify and waits for the peer's. TCP: a half-close (FIN after the data).
        # (Check TLS first: its wrapper forwards unknown attributes such as loseWriteConnection
        # to the raw TCP transport underneath.)
        if not ISSLTransport.providedBy(self.transport) and hasattr(self.transport, "loseWriteConnection"):
            self.transport.loseWriteConnection()
        else:
            self.transport.loseConnection()
        self._linger_bound = reactor.callLater(CLOSE_LINGER_TIMEOUT, self._end_lingering)

    def _end_lingering(self) -> None:
        self._linger_bound = None
        logger.info("A WebSocket client did not close its connection within %s s of our close frame; aborting it",
                    CLOSE_LINGER_TIMEOUT)
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._lingering:
            return  # after our close frame and its timeout: read only to see the peer close
        super().dataReceived(data)

    def connectionLost(self, reason: Any = connectionDone) -> None:
        if self._linger_bound is not None and self._linger_bound.active():
            self._linger_bound.cancel()
        self._linger_bound = None
        super().connectionLost(reason)


class BokehDaphneServer(Server):
    """daphne's Server using BokehWebSocketProtocol for every WebSocket.

    Besides daphne's options it takes what ``bokeh serve`` offers and daphne does not:

    - ``tls_context_factory``: serve HTTPS and WSS on every endpoint (a Twisted context
      factory such as ``twisted.internet.ssl.CertificateOptions``). Wrapping the factory,
      rather than daphne's ``ssl:`` endpoint strings, allows a key with a password (the
      string syntax has none) and ``fd:`` endpoints (``runbokeh --num-procs``).
    - ``use_xheaders``: take the client address and scheme from proxy headers with
      Tornado's rules (``bokeh serve --use-xheaders``), see ``apply_xheaders``.
    - ``websocket_compression_level`` / ``websocket_compression_mem_level``: accept
      permessage-deflate (off unless one is given, as in Tornado).
    """

    def __init__(
        self,
        *args: Any,
        tls_context_factory: Any = None,
        use_xheaders: bool = False,
        websocket_compression_level: int | None = None,
        websocket_compression_mem_level: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.tls_context_factory = tls_context_factory
        self.use_xheaders = use_xheaders
        self.websocket_compression_level = websocket_compression_level
        self.websocket_compression_mem_level = websocket_compression_mem_level

    @property
    def http_factory(self) -> Any:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: Any) -> None:
        # daphne builds this inside run() and listens with it on every endpoint. A
        # connection that opens with a WebSocket upgrade skips its HTTP channel (upgrades.py).
        # A TLS wrapper is what Twisted's own ssl: endpoints put around it too, so daphne
        # sees secure requests (isSecure(): scheme "https") and upgrades them to WSS.
        factory = UpgradeSniffingFactory(factory, self)
        if self.tls_context_factory is not None:
            factory = TLSMemoryBIOFactory(self.tls_context_factory, False, factory)
        self._http_factory = factory

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        if scope.get("type") == "websocket" and "scheme" not in scope:
            # daphne leaves "scheme" out of WebSocket scopes, which ASGI then reads as "ws",
            # even over TLS; session_context.request.protocol comes from it.
            scope["scheme"] = "wss" if ISSLTransport.providedBy(protocol.transport) else "ws"
        if scope.get("type") == "websocket":
            # BokehWebSocketProtocol.handle_reply takes a whole message's frames in one send.
            scope["extensions"] = {**(scope.get("extensions") or {}), SEND_FRAMES_EXTENSION: {}}
        if self.use_xheaders:
            apply_xheaders(scope)
        return self._start_application(protocol, scope)

    def _start_application(self, protocol: Any, scope: dict[str, Any]) -> Inbox | None:
        """daphne's ``Server.create_application`` (4.2), with an ``Inbox`` for its ``asyncio.Queue``.

        The queue lives as long as the connection, so for an open Bokeh session it is ~3 KiB
        of deques where an Inbox holds none while idle (see inbox.py).
        """
        assert "application_instance" not in self.connections[protocol]
        inbox = Inbox()
        scope.setdefault("asgi", {"version": "3.0"})
        application_instance = self.application(
            scope=scope, receive=inbox.get, send=functools.partial(self.handle_reply, protocol),
        )
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(
            application_instance, loop=asyncio.get_event_loop(),
        )
        return inbox

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
        level, mem_level = self.websocket_compression_level, self.websocket_compression_mem_level
        if level is not None or mem_level is not None:
            # As Tornado's compression options: given either, accept a client's
            # permessage-deflate offer (BokehJS's browsers all make one).
            def accept(offers: list[Any]) -> Any:
                for offer in offers:
                    if isinstance(offer, PerMessageDeflateOffer):
                        return PerMessageDeflateOfferAccept(offer, mem_level=mem_level)
                return None

            factory.setProtocolOptions(perMessageCompressionAccept=accept)
        factory.bokeh_compression_level = level
        self._ws_factory = factory

    # -- stopping --------------------------------------------------------------

    def run(self) -> None:
        self._listening_ports: list[Any] = []
        self._graceful_stop: asyncio.Future[None] | None = None
        self._stop_phase = "running"
        self._watchdog: threading.Timer | None = None
        if self.signal_handlers:
            # After "startup": Twisted installs its own handlers then, and ours replace them.
            reactor.callWhenRunning(self._install_signal_handlers)
        if self.verbosity <= 1:
            # Above 1, daphne forwards all of Twisted's log to the "daphne.server" logger.
            globalLogPublisher.addObserver(_log_twisted_error)
        try:
            super().run()
        finally:
            if self.signal_handlers:
                # The reactor has stopped; the process is exiting (joining threads can take a
                # moment). Python resets handlers it installed to the default at exit, so a
                # second SIGTERM then would kill it (-15) instead of letting it end with 0.
                # The watchdog, if started, still bounds this last part.
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, signal.SIG_IGN)

    def listen_success(self, port: Any) -> None:
        self._listening_ports.append(port)
        if getattr(port, "transport", None) is tcp.Server:
            # Every connection this port accepts writes without joining its buffers
            # (wire.py); sockets of other kinds (UNIX, -u) keep Twisted's own.
            port.transport = GatherWriteServer
        super().listen_success(port)

    def _install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        # A Python signal handler runs between two bytecodes of the loop thread; hand over to
        # the reactor as Twisted's own handlers do.
        reactor.callFromThread(self.stop_gracefully, signal.Signals(signum).name)

    def stop_gracefully(self, cause: str = "stop requested") -> None:
        """Drain and stop; called again during the drain, close every WebSocket now."""
        if self._graceful_stop is None:
            logger.info("%s: stopping (no new connections; draining sessions for up to %s s)", cause,
                        _drain_timeout())
            self._start_graceful_stop().add_done_callback(lambda _: _stop_reactor())
        elif self._stop_phase == "draining":
            logger.warning("%s again: ending the drain, closing every WebSocket now", cause)
            # Each client's disconnect reaches its consumer and session as any disconnect
            # does, so no session is left in use and stop_process() destroys them all.
            from .cluster import cut_drain_short

            cut_drain_short()
            self._close_open_websockets()
        else:
            logger.info("%s again: already stopping (%s)", cause, self._stop_phase)

    def _start_graceful_stop(self) -> asyncio.Future[None]:
        """The graceful part of stopping, run once whichever way the stop began."""
        if self._graceful_stop is None:
            self._graceful_stop = asyncio.ensure_future(self._stop_serving())
        return self._graceful_stop

    async def _stop_serving(self) -> None:
        from .cluster import stop_process

        drain_timeout = _drain_timeout()
        self._start_watchdog(drain_timeout + STOP_GRACE)
        # First of all: refuse new TCP connections, so that a proxy (nginx's
        # proxy_next_upstream error) sends new requests to another process at once.
        self._stop_phase = "stopping listening"
        loop = asyncio.get_running_loop()
        for port in self._listening_ports:
            try:
                await maybeDeferred(port.stopListening).asFuture(loop)
            except Exception:
                logger.error("Could not stop listening on %s", port, exc_info=True)
        logger.info("Stopped listening; draining")
        self._stop_phase = "draining"
        drain = asyncio.ensure_future(stop_process())
        limit = drain_timeout + STOP_PROCESS_GRACE
        done, _ = await asyncio.wait([drain], timeout=limit)
        if not done:
            where = io.StringIO()
            drain.print_stack(file=where)
            logger.error("stop_process() has not finished after %s s; stopping without it.\n%s", limit,
                         where.getvalue())
            drain.cancel()
        elif drain.exception() is not None:
            logger.error("stop_process() failed", exc_info=drain.exception())
        self._stop_phase = "closing WebSockets"
        # Any WebSocket still open carries no session (a relay, a handshake that just
        # finished); it too gets a close frame rather than a dropped connection.
        self._close_open_websockets()
        # Wait until each of their connections is gone (connectionLost), not until autobahn's
        # state says CLOSED: autobahn sets CLOSED as it *starts* dropping a connection, while
        # the transport may still hold the close frame (a TLS transport's write aggregator, the
        # TCP buffer), and stopping the reactor then (disconnectAll) discards it unwritten.
        deadline = time.monotonic() + CLOSE_HANDSHAKE_WAIT
        while self._connected_websockets() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            # A handshake that was in flight above (its consumer still awaiting Redis, say)
            # may complete meanwhile: it gets its close frame at once too.
            self._close_open_websockets()
        left = self._connected_websockets()
        if left:
            logger.warning("%d WebSocket connection(s) still open %s s after their close frames", len(left),
                           CLOSE_HANDSHAKE_WAIT)
        self._stop_phase = "stopping the reactor"

    def _open_websockets(self) -> list[WebSocketProtocol]:
        return [protocol for protocol in self._connected_websockets() if protocol.state == WebSocketProtocol.STATE_OPEN]

    def _connected_websockets(self) -> list[WebSocketProtocol]:
        """WebSockets whose connection has not been lost yet, whatever autobahn's state says."""
        return [
            protocol for protocol, details in self.connections.items()
            if isinstance(protocol, WebSocketProtocol) and "disconnected" not in details
        ]

    def _close_open_websockets(self) -> None:
        for protocol in self._open_websockets():
            protocol.handle_reply({"type": "websocket.close", "code": CloseCode.GOING_AWAY, "reason": SHUTDOWN_REASON})

    def _start_watchdog(self, seconds: float) -> None:
        """End the process after ``seconds`` even if the loop is blocked (a hook that hangs)."""

        def expire() -> None:
            # Runs in its own thread: reads plain attributes only, then exits without cleanup.
            sys.stderr.write(
                f"Stopping took longer than {seconds:g} s (still {self._stop_phase}, "
                f"{len(self.connections)} connection(s) open); exiting now. Threads:\n"
            )
            faulthandler.dump_traceback(all_threads=True)
            sys.stderr.flush()
            os._exit(1)

        self._watchdog = threading.Timer(seconds, expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def kill_all_applications(self) -> Any:
        """daphne's "before shutdown" trigger: after the graceful stop, cancel the consumers.

        Reached from stop_gracefully() once it finished, or when something else stopped the
        reactor (daphne after a listen failure, an application raising KeyboardInterrupt):
        then the graceful stop runs here first.
        """
        stopped = Deferred.fromFuture(self._start_graceful_stop())
        stopped.addErrback(lambda failure: logger.error("Graceful stop failed: %s", failure.getTraceback()))
        stopped.addBoth(lambda _: self._cancel_application_instances())
        return stopped

    def _cancel_application_instances(self) -> Deferred:
        """daphne's ``kill_all_applications``, skipping connections that have no application yet.

        daphne registers an HTTP connection when its request starts and creates the
        application once the request is read, so a request in progress at shutdown has no
        instance: daphne's version raised KeyError there and cancelled none of the rest.
        """
        pending = []
        for details in list(self.connections.values()):
            instance = details.get("application_instance")
            if instance is not None and not instance.done():
                instance.cancel()
                pending.append(instance)
        if pending:
            logger.info("Cancelled %d application instance(s) still running at shutdown", len(pending))
        # The reactor's shutdown waits for this Deferred: until the cancelled instances end.
        ended = Deferred.fromFuture(asyncio.gather(*pending, return_exceptions=True))
        ended.addErrback(lambda _: None)
        return ended


def apply_xheaders(scope: dict[str, Any]) -> None:
    """Rewrite ``scope["client"]`` and ``scope["scheme"]`` from proxy headers, as Tornado's ``xheaders``.

    The address is ``X-Real-Ip`` if given, else the last ``X-Forwarded-For`` entry (the one
    the nearest proxy added; earlier entries come from the client and can be anything);
    it is used only if it is a valid IP address. The scheme is ``X-Scheme``, else
    ``X-Forwarded-Proto`` (its last entry), if it is ``http`` or ``https``; a WebSocket
    scope gets ``ws``/``wss``. daphne's own proxy headers are not used: they take the
    first X-Forwarded-For entry and ignore X-Real-Ip, X-Scheme and, for WebSockets, the
    scheme. Only safe behind a proxy that sets these headers (clients can send them too).
    """
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    address = None
    if "x-forwarded-for" in headers:
        address = headers["x-forwarded-for"].split(",")[-1].strip()
    address = headers.get("x-real-ip", address)
    if address:
        try:
            address = str(ipaddress.ip_address(address.strip()))
        except ValueError:
            address = None
    if address:
        scope["client"] = [address, 0]
    proto = headers.get("x-scheme", headers.get("x-forwarded-proto"))
    if proto:
        proto = proto.split(",")[-1].strip().lower()
        if proto in ("http", "https"):
            if scope.get("type") == "websocket":
                scope["scheme"] = "wss" if proto == "https" else "ws"
            else:
                scope["scheme"] = proto


def _stop_reactor() -> None:
    try:
        reactor.stop()
    except ReactorNotRunning:  # something else stopped it meanwhile
        pass


def add_drain_timeout_argument(parser: argparse.ArgumentParser) -> None:
    """``--drain-timeout SECONDS``, the same for runbokeh and ``python -m bokehserve_django.daphne``."""
    parser.add_argument(
        "--drain-timeout", type=_seconds, metavar="SECONDS", dest="drain_timeout",
        help="On SIGTERM/SIGINT: stop listening, take no new sessions and wait up to this many seconds "
        "for live sessions to end, then close the rest (close code 1001 with a reason); a second "
        "signal cuts the wait short. Sets BOKEHSERVE['DRAIN_TIMEOUT'] (default 10) for this run.",
    )


def _seconds(value: str) -> int:
    # DRAIN_TIMEOUT is an int setting.
    try:
        seconds = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole seconds, got {value!r}") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more seconds, got {seconds}")
    return seconds


def _drain_timeout() -> float:
    from .conf import bokeh_settings

    return float(bokeh_settings.DRAIN_TIMEOUT)

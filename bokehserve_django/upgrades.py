"""Hands a connection that opens with a plain WebSocket upgrade straight to autobahn.

daphne parses every request with Twisted's HTTP channel. For a WebSocket upgrade it then
builds the request again as bytes and feeds those to autobahn, which parses them a second
time: a Twisted ``HTTPChannel`` (with its idle timer), a ``Request`` with its header objects,
daphne's checks and the re-serialised request, on every Bokeh connection, only to be thrown
away. ``UpgradeSniffingFactory`` looks at a new connection's first request instead: when it
is a well-formed ``GET`` upgrade to WebSocket, the connection goes to daphne's WebSocket
protocol with the bytes as received; anything else (a page, a POST, HTTP/2's preface, a
malformed or unusual request, a second request on a kept-alive connection) goes to daphne's
HTTP channel untouched, which answers it exactly as before, errors included.

The fast path takes only what Twisted and daphne would accept unchanged: the same header
name and value rules, the same size limits, no request body. Everything it refuses falls
back, so it never answers a request itself.
"""

from __future__ import annotations

from typing import Any

from daphne.utils import HEADER_NAME_RE, INVALID_HEADER_VALUE_BYTES
from twisted.internet import reactor
from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.protocols.policies import ProtocolWrapper
from twisted.web.http import HTTPChannel
from zope.interface import implementer

__all__ = ("UpgradeSniffingFactory", "plain_websocket_upgrade")

#: Twisted's limits for a request line and its headers (``HTTPChannel.totalHeadersSize``),
#: and for their count (``HTTPChannel.maxHeaders``): a request over them takes daphne's path,
#: which refuses it.
MAX_HEADER_BYTES = HTTPChannel.totalHeadersSize
MAX_HEADERS = HTTPChannel.maxHeaders
_END_OF_HEADERS = b"\r\n\r\n"
#: Printable ASCII without the space: what Twisted allows in a request target.
_TARGET_BYTES = frozenset(range(0x21, 0x7F))
#: Bytes no header line may hold here (Twisted refuses NUL, CR and LF in values; a bare LF
#: or CR would mean line endings Twisted reads differently from autobahn).
_BAD_LINE_BYTES = b"\x00\r\n"


def plain_websocket_upgrade(head: bytes) -> bytes | None:
    """The query string of ``head`` (a request line and headers, without the blank line) if it
    is a GET upgrade to WebSocket that daphne's HTTP channel would pass on to autobahn as it
    is; None for every other request, which must go to that channel."""
    lines = head.split(b"\r\n")
    if len(lines) - 1 > MAX_HEADERS:
        return None
    method, _, rest = lines[0].partition(b" ")
    target, _, version = rest.partition(b" ")
    if method != b"GET" or version != b"HTTP/1.1" or not target.startswith(b"/"):
        return None
    if not _TARGET_BYTES.issuperset(target):
        return None
    upgrades = 0
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not HEADER_NAME_RE.fullmatch(name):
            return None  # also a continuation line (it starts with a space or a tab)
        if len(line.translate(None, _BAD_LINE_BYTES)) != len(line) or INVALID_HEADER_VALUE_BYTES.intersection(value):
            return None
        name = name.lower()
        if name == b"upgrade":
            if value.strip(b" \t").lower() != b"websocket":
                return None
            upgrades += 1
        elif name in (b"content-length", b"transfer-encoding"):
            return None  # a body: daphne reads it first
    if upgrades != 1:
        return None
    return target.partition(b"?")[2]


@implementer(IProtocolNegotiationFactory)
class UpgradeSniffingFactory(ServerFactory):
    """Wraps daphne's HTTP factory: each connection's first request picks its protocol."""

    def __init__(self, http_factory: Any, server: Any) -> None:
        self.http_factory = http_factory
        self.server = server  # daphne's Server: its ws_factory is built after this factory

    def buildProtocol(self, addr: Any) -> Protocol:
        return _FirstRequest(self, addr)

    def doStart(self) -> None:
        self.http_factory.doStart()

    def doStop(self) -> None:
        self.http_factory.doStop()

    def acceptableProtocols(self) -> list[bytes]:
        # TLS asks the wrapped factory what ALPN may negotiate (HTTP/2 when available).
        return self.http_factory.acceptableProtocols()


class _FirstRequest(Protocol):
    """Holds a new connection's first bytes until its request's headers are in, then hands the
    connection, and those bytes, to the protocol that serves it."""

    _idle_timer: Any = None

    def __init__(self, factory: UpgradeSniffingFactory, addr: Any) -> None:
        self.factory = factory
        self.addr = addr
        self.buffered = b""

    def connectionMade(self) -> None:
        # As Twisted's HTTP channel: a connection that never completes a request is dropped
        # after the factory's idle timeout (12 hours unless daphne's is set).
        timeout = getattr(self.factory.http_factory, "timeOut", None)
        if timeout is not None:
            self._idle_timer = reactor.callLater(timeout, self._idle)

    def _idle(self) -> None:
        self._idle_timer = None
        if self.transport is not None:
            self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        self.buffered += data
        buffered = self.buffered
        if not buffered.startswith(b"GET /"[: len(buffered)]):
            self._to_http_channel()
            return
        end = buffered.find(_END_OF_HEADERS, 0, MAX_HEADER_BYTES + len(_END_OF_HEADERS))
        if end < 0:
            if len(buffered) > MAX_HEADER_BYTES:
                self._to_http_channel()
            return  # the headers are still coming
        query_string = plain_websocket_upgrade(buffered[:end])
        if query_string is None:
            self._to_http_channel()
            return
        websocket = self.factory.server.ws_factory.buildProtocol(self.addr)
        websocket._raw_query_string = query_string  # daphne's HTTP request sets it
        self._hand_to(websocket)

    def _to_http_channel(self) -> None:
        self._hand_to(self.factory.http_factory.buildProtocol(self.addr))

    def _hand_to(self, protocol: Protocol) -> None:
        self._cancel_idle_timer()
        transport, data = self.transport, self.buffered
        self.transport = None
        self.buffered = b""
        # As daphne's upgrade: under TLS the transport is Twisted's TLS protocol (a wrapper),
        # which delivers to wrappedProtocol; a TCP transport delivers to .protocol.
        if isinstance(transport, ProtocolWrapper):
            transport.wrappedProtocol = protocol
        else:
            transport.protocol = protocol
        protocol.makeConnection(transport)
        protocol.dataReceived(data)

    def connectionLost(self, reason: Any = connectionDone) -> None:
        # The client left before its first request was complete: nothing was started.
        self._cancel_idle_timer()
        self.buffered = b""

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.cancel()
        self._idle_timer = None

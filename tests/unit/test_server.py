"""BokehWebSocketProtocol ends a connection whose close handshake timed out without discarding the close frame.

autobahn aborts such a connection (abortConnection: buffered data dropped, TCP reset). Its
timeout fires 0-1 s after the close frame was queued, so at shutdown, with the loop busy
destroying sessions, the frame was often not written yet, or was reset right behind it
(tests/integration/test_tls_and_proxy.py and tests/cluster/test_rolling_restart.py saw 1006).
No sockets here: a transport that records what it is asked to do, and a fake clock.
"""

from __future__ import annotations

import pytest
import txaio
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from zope.interface import directlyProvides

from bokehserve_django import server as server_module
from bokehserve_django.server import CLOSE_LINGER_TIMEOUT, BokehWebSocketProtocol


class RecordingTransport:
    """Plain TCP: has a half-close."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def loseWriteConnection(self) -> None:
        self.calls.append("loseWriteConnection")

    def loseConnection(self) -> None:
        self.calls.append("loseConnection")

    def abortConnection(self) -> None:
        self.calls.append("abortConnection")

    def unregisterProducer(self) -> None:
        pass


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(server_module, "reactor", clock)
    return clock


def closing_protocol(transport: RecordingTransport) -> BokehWebSocketProtocol:
    """A protocol that sent its close frame (state CLOSING) and waits for the client's."""
    txaio.use_twisted()
    protocol = BokehWebSocketProtocol()
    protocol.transport = transport
    protocol.state = protocol.STATE_CLOSING
    protocol.is_closed = txaio.create_future()
    protocol.peer = "tcp:127.0.0.1:1"
    protocol.wasClean = True  # until something says otherwise, as autobahn's own state
    return protocol


class TestCloseHandshakeTimeout:
    def test_tcp_half_closes_after_the_buffered_frame_then_aborts_past_the_bound(self, clock) -> None:
        protocol = closing_protocol(transport := RecordingTransport())
        protocol.onCloseHandshakeTimeout()
        # Not abortConnection(): that drops what is still buffered (our close frame) and resets.
        assert transport.calls == ["loseWriteConnection"]
        assert (protocol.state, protocol.wasClean, protocol.wasCloseHandshakeTimeout) == (
            protocol.STATE_CLOSED, False, True)
        protocol.dataReceived(b"\x81\x05hello")  # what the client sends meanwhile is ignored
        clock.advance(CLOSE_LINGER_TIMEOUT - 0.1)
        assert transport.calls == ["loseWriteConnection"]
        clock.advance(0.2)
        assert transport.calls == ["loseWriteConnection", "abortConnection"]

    def test_tls_closes_through_the_tls_layer(self, clock) -> None:
        transport = RecordingTransport()
        directlyProvides(transport, ISSLTransport)
        protocol = closing_protocol(transport)
        protocol.onCloseHandshakeTimeout()
        # The TLS wrapper would forward loseWriteConnection to the raw TCP transport, past its
        # write aggregator and without close_notify: loseConnection flushes both.
        assert transport.calls == ["loseConnection"]

    def test_a_connection_lost_meanwhile_is_not_aborted(self, clock, monkeypatch) -> None:
        from daphne.ws_protocol import WebSocketProtocol

        monkeypatch.setattr(WebSocketProtocol, "connectionLost", lambda self, reason=None: None)
        protocol = closing_protocol(transport := RecordingTransport())
        protocol.onCloseHandshakeTimeout()
        protocol.connectionLost()
        clock.advance(CLOSE_LINGER_TIMEOUT + 1)
        assert transport.calls == ["loseWriteConnection"]

    def test_other_drops_are_autobahns(self, clock) -> None:
        # E.g. right after the client's close reply: nothing of ours is left to deliver.
        protocol = closing_protocol(transport := RecordingTransport())
        protocol.dropConnection(abort=True)
        assert transport.calls == ["abortConnection"]

"""upgrades.py: which first requests go straight to the WebSocket protocol, and the hand-off itself."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from bokehserve_django import upgrades
from bokehserve_django.upgrades import UpgradeSniffingFactory, plain_websocket_upgrade

UPGRADE = (
    b"GET /widget/ws?bokeh-session-id=abc&x=1 HTTP/1.1\r\n"
    b"Host: 127.0.0.1:5006\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: bokeh, eyJzZXNzaW9uX2lkIjoiYWJjIn0\r\n"
    b"Origin: http://127.0.0.1:5006"
)


def with_header(line: bytes) -> bytes:
    return UPGRADE + b"\r\n" + line


def test_a_browser_upgrade_is_taken_with_its_query_string() -> None:
    assert plain_websocket_upgrade(UPGRADE) == b"bokeh-session-id=abc&x=1"


def test_an_upgrade_without_a_query_string_has_an_empty_one() -> None:
    assert plain_websocket_upgrade(UPGRADE.replace(b"?bokeh-session-id=abc&x=1", b"", 1)) == b""


def test_header_names_and_the_upgrade_token_are_case_insensitive() -> None:
    head = UPGRADE.replace(b"Upgrade: websocket", b"UPGRADE:   WebSocket ")
    assert plain_websocket_upgrade(head) == b"bokeh-session-id=abc&x=1"


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(UPGRADE.replace(b"GET ", b"POST ", 1), id="not a GET"),
        pytest.param(UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0", 1), id="HTTP/1.0"),
        pytest.param(UPGRADE.replace(b"GET /", b"GET http://h/", 1), id="absolute target"),
        pytest.param(UPGRADE.replace(b"/widget/ws", b"/w\xc3\xa9/ws", 1), id="target not ASCII"),
        pytest.param(UPGRADE.replace(b"/widget/ws", b"/widget /ws", 1), id="space in target"),
        pytest.param(UPGRADE.replace(b"Upgrade: websocket\r\n", b"", 1), id="no Upgrade header"),
        pytest.param(UPGRADE.replace(b"Upgrade: websocket", b"Upgrade: h2c", 1), id="upgrade to something else"),
        pytest.param(with_header(b"Upgrade: websocket"), id="two Upgrade headers"),
        pytest.param(with_header(b"Content-Length: 4"), id="a body"),
        pytest.param(with_header(b"Transfer-Encoding: chunked"), id="a chunked body"),
        pytest.param(with_header(b"Bad Name: x"), id="space in a header name"),
        pytest.param(with_header(b"  folded continuation"), id="continuation line"),
        pytest.param(with_header(b"NoColon"), id="line without a colon"),
        pytest.param(with_header(b"X-Nul: a\x00b"), id="NUL in a value"),
        pytest.param(with_header(b"X-Lf: a\nb"), id="bare LF"),
        pytest.param(with_header(b"X-Vt: a\x0bb"), id="value byte RFC 9110 disallows"),
        pytest.param(UPGRADE + b"\r\nX-A: 1" * upgrades.MAX_HEADERS, id="more headers than Twisted allows"),
    ],
)
def test_every_other_request_goes_to_daphnes_http_channel(head: bytes) -> None:
    assert plain_websocket_upgrade(head) is None


def test_a_header_name_with_an_underscore_is_taken() -> None:
    # A valid token to Twisted too; daphne's WebSocket protocol drops such headers from the
    # scope (CVE-2015-0219) on either path.
    assert plain_websocket_upgrade(with_header(b"X_Under: x")) == b"bokeh-session-id=abc&x=1"


class Recorder(Protocol):
    """A protocol that keeps what it was given."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)


class RecordingFactory:
    """Builds Recorders: daphne's HTTP factory, or its WebSocket factory."""

    def __init__(self) -> None:
        self.built: list[Recorder] = []
        self.timeOut = 60

    def buildProtocol(self, addr: Any) -> Recorder:
        self.built.append(Recorder())
        return self.built[-1]


class Server:
    """daphne's Server as far as the factory reads it: its WebSocket factory."""

    def __init__(self) -> None:
        self.ws_factory = RecordingFactory()


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(upgrades, "reactor", clock)
    return clock


@pytest.fixture
def factory(clock) -> UpgradeSniffingFactory:
    return UpgradeSniffingFactory(RecordingFactory(), Server())


def connect(factory: UpgradeSniffingFactory, transport: Any = None) -> tuple[Protocol, StringTransport]:
    transport = transport or StringTransport()
    first = factory.buildProtocol(("127.0.0.1", 1234))
    first.makeConnection(transport)
    return first, transport


def test_an_upgrade_in_pieces_reaches_the_websocket_protocol_whole(factory) -> None:
    first, transport = connect(factory)
    request = UPGRADE + b"\r\n\r\n"
    for i in range(len(request)):
        first.dataReceived(request[i : i + 1])
    (websocket,) = factory.server.ws_factory.built
    assert websocket.received == [request]
    assert websocket._raw_query_string == b"bokeh-session-id=abc&x=1"
    assert transport.protocol is websocket
    assert websocket.transport is transport
    assert factory.http_factory.built == []
    assert first._idle_timer is None  # cancelled at the hand-off


def test_a_frame_sent_with_the_upgrade_is_passed_on(factory) -> None:
    first, _ = connect(factory)
    request = UPGRADE + b"\r\n\r\n" + b"\x81\x85frame"
    first.dataReceived(request)
    (websocket,) = factory.server.ws_factory.built
    assert websocket.received == [request]


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET /widget HTTP/1.1\r\nHost: h\r\n\r\n", id="a page"),
        pytest.param(b"POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", id="a POST, decided on its first byte"),
        pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", id="HTTP/2's preface"),
        pytest.param(with_header(b"X-Vt: \x0b") + b"\r\n\r\n", id="a malformed upgrade, for daphne's 400"),
    ],
)
def test_anything_else_reaches_the_http_channel_byte_for_byte(factory, request_bytes) -> None:
    first, transport = connect(factory)
    first.dataReceived(request_bytes)
    (channel,) = factory.http_factory.built
    assert b"".join(channel.received) == request_bytes
    assert transport.protocol is channel
    assert factory.server.ws_factory.built == []


def test_headers_longer_than_twisted_allows_go_to_the_http_channel_once_over_the_limit(factory) -> None:
    first, _ = connect(factory)
    first.dataReceived(b"GET / HTTP/1.1\r\nX-Long: ")
    first.dataReceived(b"a" * (upgrades.MAX_HEADER_BYTES // 2))
    assert factory.http_factory.built == []  # still waiting for the end of the headers
    first.dataReceived(b"a" * upgrades.MAX_HEADER_BYTES)
    (channel,) = factory.http_factory.built
    assert len(b"".join(channel.received)) > upgrades.MAX_HEADER_BYTES


def test_under_tls_the_wrapper_delivers_to_the_chosen_protocol(factory) -> None:
    wrapper = ProtocolWrapper(WrappingFactory(factory), factory.buildProtocol(None))
    transport = StringTransport()
    wrapper.makeConnection(transport)
    wrapper.dataReceived(UPGRADE + b"\r\n\r\n")
    (websocket,) = factory.server.ws_factory.built
    assert wrapper.wrappedProtocol is websocket
    assert websocket.transport is wrapper


def test_a_client_that_leaves_before_its_headers_end_stops_the_idle_timer(factory) -> None:
    first, _ = connect(factory)
    first.dataReceived(b"GET /widget/ws HTTP/1.1\r\n")
    timer = first._idle_timer
    assert timer.active()
    first.connectionLost()
    assert not timer.active()


def test_a_connection_that_never_completes_a_request_is_dropped_after_the_idle_timeout(factory, clock) -> None:
    first, transport = connect(factory)
    first.dataReceived(b"GET /widget/ws HTTP/1.1\r\n")
    clock.advance(factory.http_factory.timeOut - 1)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting

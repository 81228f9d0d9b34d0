"""BokehWebSocketProtocol's close handshake timeout and its send path (with wire.GatherWriteServer).

A connection whose close handshake timed out ends without discarding the close frame.

autobahn aborts such a connection (abortConnection: buffered data dropped, TCP reset). Its
timeout fires 0-1 s after the close frame was queued, so at shutdown, with the loop busy
destroying sessions, the frame was often not written yet, or was reset right behind it
(tests/integration/test_tls_and_proxy.py and tests/cluster/test_rolling_restart.py saw 1006).
No sockets here: a transport that records what it is asked to do, and a fake clock.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import txaio
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from zope.interface import directlyProvides

from bokehserve_django import server as server_module
from bokehserve_django.server import CLOSE_LINGER_TIMEOUT, BokehWebSocketProtocol
from bokehserve_django.wire import (
    EAGER_WRITE_BYTES,
    MAX_GATHER_BUFFERS,
    GatherWriteServer,
    websocket_frame_header,
)


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


# ---------------------------------------------------------------------------
# The send path: frames written as header + payload, never joined (wire.py)
# ---------------------------------------------------------------------------


class WritesTransport:
    """Records every write and writeSequence as the list of objects handed over."""

    def __init__(self) -> None:
        self.writes: list[tuple[bytes, ...]] = []

    def write(self, data: bytes) -> None:
        self.writes.append((data,))

    def writeSequence(self, data: Any) -> None:
        self.writes.append(tuple(data))

    def wire(self) -> bytes:
        return b"".join(b"".join(chunks) for chunks in self.writes)


def open_protocol(transport: WritesTransport, **options: Any) -> BokehWebSocketProtocol:
    """An open server-side protocol with autobahn's default options (no compression)."""
    from collections import deque

    from autobahn.websocket.protocol import TrafficStats

    txaio.use_twisted()
    protocol = BokehWebSocketProtocol()
    protocol.factory = SimpleNamespace(isServer=True)
    protocol.transport = transport
    protocol.state = protocol.STATE_OPEN
    protocol.peer = "tcp:127.0.0.1:1"
    protocol.send_queue = deque()
    protocol.triggered = False
    protocol.trafficStats = TrafficStats()
    protocol.trackedTimings = None
    protocol._perMessageCompress = None
    for name, value in {"autoFragmentSize": 0, "maskServerFrames": False, "applyMask": True,
                        "maxMessagePayloadSize": 0, "logFrames": False, "logOctets": False, **options}.items():
        setattr(protocol, name, value)
    return protocol


class TestSendMessage:
    # Lengths on each side of the 7-bit, 16-bit and 64-bit length encodings.
    @pytest.mark.parametrize("length", [0, 1, 125, 126, 65_535, 65_536, 8_000_000])
    @pytest.mark.parametrize("binary", [True, False], ids=["binary", "text"])
    def test_frames_match_autobahns_byte_for_byte(self, length: int, binary: bool) -> None:
        from autobahn.websocket.protocol import WebSocketProtocol

        payload = bytes(range(256)) * (length // 256) + bytes(length % 256)
        ours, theirs = WritesTransport(), WritesTransport()
        open_protocol(ours).sendMessage(payload, binary)
        WebSocketProtocol.sendMessage(open_protocol(theirs), payload, binary)
        assert ours.wire() == theirs.wire()

    def test_the_payload_object_is_written_as_it_is(self) -> None:
        payload = b"\x00" * 8_000_000
        transport = WritesTransport()
        protocol = open_protocol(transport)
        protocol.sendMessage(payload, True)
        (header, written), = transport.writes
        assert written is payload  # not a copy joined to the header
        assert header == b"\x82\x7f" + (8_000_000).to_bytes(8, "big")
        stats = protocol.trafficStats
        assert (stats.outgoingWebSocketMessages, stats.outgoingWebSocketFrames) == (1, 1)
        assert stats.outgoingOctetsWireLevel == 10 + 8_000_000

    @pytest.mark.parametrize("options", [{"autoFragmentSize": 1000}, {"maskServerFrames": True}],
                             ids=["fragmented", "masked"])
    def test_other_framings_take_autobahns_path(self, options: dict[str, Any]) -> None:
        from autobahn.websocket.protocol import WebSocketProtocol

        payload = b"x" * 5000
        ours, theirs = WritesTransport(), WritesTransport()
        open_protocol(ours, **options).sendMessage(payload, True)
        WebSocketProtocol.sendMessage(open_protocol(theirs, **options), payload, True)
        assert [len(w) for w in ours.writes] == [len(w) for w in theirs.writes]
        assert all(len(w) == 1 for w in ours.writes)  # autobahn's single joined writes
        if "maskServerFrames" not in options:  # masks are random
            assert ours.wire() == theirs.wire()

    def test_compressed_messages_take_autobahns_path(self) -> None:
        import zlib

        from autobahn.websocket.compress import PerMessageDeflate

        transport = WritesTransport()
        protocol = open_protocol(transport)
        protocol._perMessageCompress = PerMessageDeflate(True, False, False, 15, 15, 8)
        payload = b"abc" * 10_000
        protocol.sendMessage(payload, True)
        (frame,), = transport.writes
        assert frame[0] == 0xC2  # FIN, RSV1 (compressed), binary
        length = frame[1] & 0x7F
        body = frame[2:] if length <= 125 else frame[4:]  # 7-bit or 16-bit length
        assert len(body) < len(payload)
        assert zlib.decompressobj(-15).decompress(body + b"\x00\x00\xff\xff") == payload


class FakeSocket:
    """Takes at most ``limit`` bytes per sendmsg, or raises EWOULDBLOCK when ``limit`` is 0."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.received = bytearray()
        self.calls: list[int] = []

    def sendmsg(self, buffers: list[Any]) -> int:
        import errno

        self.calls.append(len(buffers))
        if self.limit == 0:
            raise BlockingIOError(errno.EWOULDBLOCK, "would block")
        data = b"".join(bytes(b) for b in buffers)[: self.limit]
        self.received += data
        return len(data)


class RecordingGatherWriteServer(GatherWriteServer):
    """GatherWriteServer's write path alone: no reactor, no real socket."""

    def __init__(self, sock: FakeSocket) -> None:  # skips tcp.Server's socket/reactor setup
        self.socket = sock
        self.connected = 1
        self._tempDataBuffer = []
        self._tempDataLen = 0
        self.producer = None
        self.writing: bool | None = None
        self.post_lose = 0

    def startWriting(self) -> None:
        self.writing = True

    def stopWriting(self) -> None:
        self.writing = False

    def _maybePauseProducer(self) -> None:
        pass

    def _postLoseConnection(self) -> Any:
        self.post_lose += 1
        return None


class TestGatherWriteServer:
    def test_partial_sends_deliver_every_byte_in_order_without_copies(self) -> None:
        sock = FakeSocket(limit=700)
        transport = RecordingGatherWriteServer(sock)
        chunks = [b"a" * 10, b"", b"b" * 1000, b"c" * 5, b"d" * 2500]
        transport.write(chunks[0])
        transport.writeSequence(chunks[1:3])
        transport.writeSequence(chunks[3:])
        turns = 0
        while transport.writing:
            transport.doWrite()
            turns += 1
            assert turns < 20
            if turns == 2:  # a write between two turns goes behind what is pending
                transport.write(b"e" * 3)
                chunks.append(b"e" * 3)
        assert bytes(sock.received) == b"".join(chunks)
        assert (transport.dataBuffer, transport.offset, transport._tempDataBuffer, transport._tempDataLen) == (
            b"", 0, [], 0)

    def test_a_partly_sent_buffer_is_kept_not_copied(self) -> None:
        sock = FakeSocket(limit=6)
        transport = RecordingGatherWriteServer(sock)
        big = b"0123456789"
        transport.writeSequence((b"ab", big))
        transport.doWrite()
        assert transport.dataBuffer is big and transport.offset == 4
        assert transport._tempDataLen == 0 and transport.writing

    def test_a_full_socket_sends_nothing_and_keeps_everything(self) -> None:
        sock = FakeSocket(limit=0)
        transport = RecordingGatherWriteServer(sock)
        transport.write(b"hello")
        assert transport.doWrite() is None
        assert transport._tempDataBuffer == [b"hello"] and transport._tempDataLen == 5 and transport.writing
        sock.limit = 100
        transport.doWrite()
        assert bytes(sock.received) == b"hello" and transport.writing is False

    def test_a_broken_connection_is_reported(self) -> None:
        from twisted.internet import main

        class Broken(FakeSocket):
            def sendmsg(self, buffers: list[Any]) -> int:
                raise ConnectionResetError(104, "reset")

        transport = RecordingGatherWriteServer(Broken(0))
        transport.write(b"x")
        assert transport.doWrite() is main.CONNECTION_LOST

    def test_one_call_takes_at_most_max_gather_buffers(self) -> None:
        sock = FakeSocket(limit=10**6)
        transport = RecordingGatherWriteServer(sock)
        transport.writeSequence([b"x"] * (MAX_GATHER_BUFFERS * 2 + 1))
        while transport.writing:
            transport.doWrite()
        assert sock.calls == [MAX_GATHER_BUFFERS, MAX_GATHER_BUFFERS, 1]
        assert bytes(sock.received) == b"x" * (MAX_GATHER_BUFFERS * 2 + 1)

    def test_lose_connection_waits_for_the_buffers(self) -> None:
        sock = FakeSocket(limit=3)
        transport = RecordingGatherWriteServer(sock)
        transport.write(b"abcdef")
        transport.disconnecting = True
        transport.doWrite()
        assert transport.post_lose == 0
        transport.doWrite()
        assert transport.post_lose == 1 and bytes(sock.received) == b"abcdef"

    def test_send_now_writes_at_once_and_leaves_the_bookkeeping_to_do_write(self) -> None:
        sock = FakeSocket(limit=10**6)
        transport = RecordingGatherWriteServer(sock)
        transport.writeSequence((b"head", b"payload"))
        transport.send_now()
        assert bytes(sock.received) == b"headpayload"
        assert transport.writing  # the reactor's next doWrite stops writing
        transport.doWrite()
        assert transport.writing is False

    def test_send_now_on_a_broken_connection_leaves_it_to_do_write(self) -> None:
        from twisted.internet import main

        class Broken(FakeSocket):
            def sendmsg(self, buffers: list[Any]) -> int:
                raise BrokenPipeError(32, "broken pipe")

        transport = RecordingGatherWriteServer(Broken(0))
        transport.write(b"x")
        transport.send_now()  # does not raise
        assert transport.doWrite() is main.CONNECTION_LOST


class TestEagerWrites:
    @pytest.mark.parametrize(("length", "eager"), [(EAGER_WRITE_BYTES - 1, False), (EAGER_WRITE_BYTES, True)])
    def test_a_large_payload_is_handed_to_the_kernel_as_it_is_queued(self, length: int, eager: bool) -> None:
        sock = FakeSocket(limit=10**7)
        transport = RecordingGatherWriteServer(sock)
        protocol = open_protocol(transport)  # type: ignore[arg-type]
        protocol.sendMessage(b"{}", False)
        protocol.sendMessage(b"\x01" * length, True)
        expected = b"\x81\x02{}" + websocket_frame_header(2, length) + b"\x01" * length
        assert bytes(sock.received) == (expected if eager else b"")
        transport.doWrite()
        assert bytes(sock.received) == expected


class TestSendFramesExtension:
    def test_a_whole_message_is_written_as_its_frames_back_to_back(self) -> None:
        from bokehserve_django.protocol import SEND_FRAMES_EXTENSION

        frames = ['{"msgtype":"PATCH-DOC","num_buffers":1}', "{}", '{"events":[]}', '{"id":"b"}', b"\x00" * 70_000]
        together, one_by_one = WritesTransport(), WritesTransport()
        open_protocol(together).handle_reply({"type": SEND_FRAMES_EXTENSION, "frames": frames})
        protocol = open_protocol(one_by_one)
        for frame in frames:
            if isinstance(frame, bytes):
                protocol.handle_reply({"type": "websocket.send", "bytes": frame})
            else:
                protocol.handle_reply({"type": "websocket.send", "text": frame})
        assert together.wire() == one_by_one.wire()
        assert together.wire().startswith(b"\x81\x27{")  # a text frame first, 39 bytes

    def test_on_a_closed_connection_it_raises_as_a_websocket_send_does(self) -> None:
        from autobahn.exception import Disconnected

        from bokehserve_django.protocol import SEND_FRAMES_EXTENSION

        protocol = open_protocol(transport := WritesTransport())
        protocol.state = protocol.STATE_CLOSED
        with pytest.raises(Disconnected):
            protocol.handle_reply({"type": SEND_FRAMES_EXTENSION, "frames": ["{}"]})
        assert transport.writes == []

    def test_the_server_offers_it_in_websocket_scopes_only(self, monkeypatch) -> None:
        from bokehserve_django.protocol import SEND_FRAMES_EXTENSION
        from bokehserve_django.server import BokehDaphneServer

        seen: list[dict[str, Any]] = []
        monkeypatch.setattr(BokehDaphneServer, "_start_application", lambda self, protocol, scope: seen.append(scope))
        server = BokehDaphneServer.__new__(BokehDaphneServer)  # no reactor, no ports
        server.use_xheaders = False
        protocol = SimpleNamespace(transport=SimpleNamespace())
        server.create_application(protocol, {"type": "websocket", "extensions": {"x": {}}})
        server.create_application(protocol, {"type": "http"})
        assert seen[0]["extensions"] == {"x": {}, SEND_FRAMES_EXTENSION: {}}
        assert "extensions" not in seen[1]


class TestConnectionSetupLogging:
    """autobahn's per-connection debug line is formatted only when it is written."""

    def test_the_deferred_text_is_pformats(self) -> None:
        import pprint

        import autobahn.websocket.protocol as autobahn_protocol

        options = [("autoPingInterval", 0), ("maxMessagePayloadSize", 20 * 2**20), ("openHandshakeTimeout", 30)]
        with server_module._pformat_when_logged():
            deferred = autobahn_protocol.pformat(options)
        assert autobahn_protocol.pformat is pprint.pformat
        assert "\n{attrs}".format(attrs=deferred) == "\n" + pprint.pformat(options)  # noqa: UP032 - as txaio formats the line

    def test_it_is_restored_when_the_setup_fails(self) -> None:
        import pprint

        import autobahn.websocket.protocol as autobahn_protocol

        with pytest.raises(RuntimeError), server_module._pformat_when_logged():
            raise RuntimeError("setup failed")
        assert autobahn_protocol.pformat is pprint.pformat

    def test_a_connection_is_set_up_without_formatting_its_options(self, monkeypatch) -> None:
        import pprint

        from autobahn.websocket.protocol import WebSocketServerFactory

        formatted: list[object] = []
        monkeypatch.setattr(pprint.PrettyPrinter, "pformat", lambda self, value: formatted.append(value) or "")
        protocol = BokehWebSocketProtocol()
        protocol.factory = WebSocketServerFactory()
        protocol._connectionMade()
        assert formatted == []
        assert protocol.state == protocol.STATE_CONNECTING


class TestPerConnectionState:
    """What an open WebSocket keeps: no handshake leftovers, and an Inbox instead of asyncio.Queue."""

    async def test_the_application_reads_from_an_inbox_that_daphne_fills(self) -> None:
        import asyncio

        from bokehserve_django.inbox import Inbox
        from bokehserve_django.server import BokehDaphneServer

        received: list[dict[str, Any]] = []

        async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
            received.append(await receive())

        server = BokehDaphneServer.__new__(BokehDaphneServer)  # no reactor, no ports
        server.application = application
        protocol = object()
        server.connections = {protocol: {}}
        inbox = server._start_application(protocol, {"type": "websocket"})
        assert isinstance(inbox, Inbox)
        inbox.put_nowait({"type": "websocket.connect"})
        await asyncio.wait_for(server.connections[protocol]["application_instance"], 5)
        assert received == [{"type": "websocket.connect"}]

    def test_the_upgrade_request_is_let_go_once_the_websocket_is_open(self) -> None:
        from twisted.web.http import HTTPChannel

        class ProducerTransport:
            producer: Any = HTTPChannel()

            def unregisterProducer(self) -> None:
                self.producer = None

        protocol = BokehWebSocketProtocol()
        protocol.transport = transport = ProducerTransport()
        protocol.http_headers = {"host": "127.0.0.1:5006", "cookie": "x" * 500}
        protocol.http_request_data = b"GET /app/ws HTTP/1.1\r\n" + b"x" * 500
        protocol.websocket_protocols = ["bokeh", "t" * 400]
        protocol.request = SimpleNamespace(path="/app/ws", headers=protocol.http_headers, peer="x" * 100)
        protocol._release_handshake_state()
        assert transport.producer is None
        assert (protocol.http_headers, protocol.http_request_data) == ({}, b"")
        assert protocol.websocket_protocols == []
        assert protocol.request.path == "/app/ws"
        assert not hasattr(protocol.request, "headers")

    def test_daphne_logs_the_open_and_the_close_of_a_released_websocket(self) -> None:
        # daphne's onOpen and onClose read request.path; without it both raised, which cut
        # autobahn's handshake success short and left a Twisted traceback per connection.
        actions: list[tuple[str, dict[str, Any]]] = []
        disconnected: list[Any] = []
        protocol = BokehWebSocketProtocol()
        protocol.transport = SimpleNamespace()
        protocol.factory = SimpleNamespace(bokeh_compression_level=None)
        protocol.server = SimpleNamespace(
            log_action=lambda kind, action, details: actions.append((action, details)),
            protocol_disconnected=disconnected.append,
        )
        protocol._perMessageCompress = None
        protocol.client_addr = ["127.0.0.1", 5000]
        protocol.request = SimpleNamespace(path="/app/ws", headers={})
        protocol.muted = False
        queue: list[dict[str, Any]] = []
        protocol.application_queue = SimpleNamespace(put_nowait=queue.append)
        protocol.onOpen()
        protocol.onClose(True, 1000, "")
        assert actions == [
            ("connected", {"path": "/app/ws", "client": "127.0.0.1:5000"}),
            ("disconnected", {"path": "/app/ws", "client": "127.0.0.1:5000"}),
        ]
        assert disconnected == [protocol]
        assert queue == [{"type": "websocket.disconnect", "code": 1000}]

    def test_another_producer_stays_registered(self) -> None:
        other = object()
        transport = SimpleNamespace(producer=other, unregisterProducer=lambda: pytest.fail("unregistered"))
        protocol = BokehWebSocketProtocol()
        protocol.transport = transport
        protocol.request = SimpleNamespace(path="/app/ws")
        protocol._release_handshake_state()
        assert transport.producer is other


class TestTwistedErrors:
    """Twisted's errors reach the server log; daphne would send them nowhere."""

    def test_an_error_logged_in_twisted_is_a_server_log_error_with_its_traceback(self, caplog) -> None:
        from twisted.logger import globalLogPublisher
        from twisted.python import log as twisted_log
        from twisted.python.failure import Failure

        try:
            raise AttributeError("'NoneType' object has no attribute 'path'")
        except AttributeError:
            failure = Failure()
        # twisted.python.log.err is what Twisted's callWithLogger and Deferreds use; catch the
        # event it publishes and hand it to the observer runbokeh adds.
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        try:
            twisted_log.err(failure, "Unhandled error in a callback")
        finally:
            globalLogPublisher.removeObserver(events.append)
        with caplog.at_level("INFO", logger="bokehserve_django.server"):
            for event in events:
                server_module._log_twisted_error(event)
        errors = [r for r in caplog.records if r.name == "bokehserve_django.server"]
        assert len(errors) == 1
        assert errors[0].levelname == "ERROR"
        assert "Unhandled error in a callback" in errors[0].getMessage()
        assert "AttributeError: 'NoneType' object has no attribute 'path'" in errors[0].getMessage()

    def test_other_twisted_events_are_dropped(self, caplog) -> None:
        from twisted.logger import LogLevel

        with caplog.at_level("DEBUG", logger="bokehserve_django.server"):
            for level in (LogLevel.debug, LogLevel.info, LogLevel.warn):
                server_module._log_twisted_error({"log_level": level, "log_format": "dropped"})
        assert [r for r in caplog.records if r.name == "bokehserve_django.server"] == []


class TestCancelApplicationInstances:
    async def test_a_connection_without_an_application_yet_is_skipped_and_the_rest_are_cancelled(self) -> None:
        import asyncio

        from bokehserve_django.server import BokehDaphneServer

        async def forever() -> None:
            await asyncio.sleep(3600)

        running = asyncio.ensure_future(forever())
        finished = asyncio.ensure_future(asyncio.sleep(0))
        await finished
        server = BokehDaphneServer.__new__(BokehDaphneServer)  # no reactor, no ports
        # An HTTP request still being read has no "application_instance" yet.
        server.connections = {"reading": {"connected": 0.0}, "open": {"application_instance": running},
                              "done": {"application_instance": finished}}
        ended = server._cancel_application_instances()
        for _ in range(20):  # a few loop turns: the cancellation, gather, then the Deferred
            if ended.called:
                break
            await asyncio.sleep(0)
        assert running.cancelled()
        assert ended.called

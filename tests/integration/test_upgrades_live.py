"""WebSocket upgrades on a live runbokeh, by the fast path (upgrades.py) and by daphne's HTTP channel.

Raw sockets, so that the request's bytes and their timing are exactly what the test says: an
upgrade trickled in a few bytes at a time, an upgrade after a page on one kept-alive
connection (daphne's path), and a malformed upgrade, which daphne still refuses with 400.
"""

from __future__ import annotations

import base64
import os
import socket
import time

from tests.bokeh_client import make_token
from tests.live import LiveServer

TIMEOUT = 20


def upgrade_request(server: LiveServer, extra: bytes = b"") -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET /echo/ws HTTP/1.1\r\n"
        b"Host: 127.0.0.1:%d\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: bokeh, %s\r\n"
        b"%s\r\n"
    ) % (server.port, key, make_token().encode(), extra)


def read_until(sock: socket.socket, marker: bytes, buffered: bytes = b"") -> tuple[bytes, bytes]:
    """(everything up to and including ``marker``, what came after it)."""
    deadline = time.monotonic() + TIMEOUT
    while marker not in buffered:
        assert time.monotonic() < deadline, f"no {marker!r} in {buffered!r}"
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {buffered!r}"
        buffered += chunk
    head, _, rest = buffered.partition(marker)
    return head + marker, rest


def assert_opened_with_ack(sock: socket.socket, buffered: bytes = b"") -> None:
    head, rest = read_until(sock, b"\r\n\r\n", buffered)
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert b"sec-websocket-protocol: bokeh\r\n" in head.lower(), head
    # The session's first message: ACK, in a text frame of its header.
    read_until(sock, b'"msgtype": "ACK"', rest)


def connection(server: LiveServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)


def test_an_upgrade_sent_a_few_bytes_at_a_time_opens_the_session(server) -> None:
    request = upgrade_request(server)
    with connection(server) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, len(request), 7):
            sock.sendall(request[start : start + 7])
            time.sleep(0.002)
        assert_opened_with_ack(sock)


def test_an_upgrade_after_a_page_on_one_kept_alive_connection_opens_the_session(server) -> None:
    with connection(server) as sock:
        sock.sendall(b"GET /favicon.ico HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % server.port)
        head, rest = read_until(sock, b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        length = int(next(line.split(b":")[1] for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")))
        while len(rest) < length:
            rest += sock.recv(65536)
        sock.sendall(upgrade_request(server))
        assert_opened_with_ack(sock, rest[length:])


def test_a_malformed_upgrade_still_gets_daphnes_400(server) -> None:
    with connection(server) as sock:
        sock.sendall(upgrade_request(server, extra=b"X-Bad: a\x0bb\r\n"))
        head, _ = read_until(sock, b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), head

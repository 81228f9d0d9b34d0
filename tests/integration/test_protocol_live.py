"""Protocol tests against a real ``manage.py runbokeh`` (daphne) process.

Plain ``websockets`` clients (tests.bokeh_client.RawBokehClient) drive the wire protocol
frame by frame; ``bokeh.client`` checks that Bokeh's own Python client works against us.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import bokeh
import numpy as np
import pytest
import websockets
from bokeh.client import pull_session, push_session
from bokeh.document import Document
from bokeh.models import Div
from tornado.ioloop import IOLoop
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.bokeh_client import PROTOCOL, RawBokehClient, make_token
from tests.live import LiveServer

#: Seconds to wait for any one message or handshake.
TIMEOUT = 20
#: Per-message limit of the second server (runbokeh --websocket-max-message-size).
SMALL_LIMIT = 100_000
BIG = 1_000_000


# ---------------------------------------------------------------------------
# A raw client with timeouts and a client-side Document
# ---------------------------------------------------------------------------


class Peer(RawBokehClient):
    """RawBokehClient with a timeout on every receive, plus pull/patch against a local Document."""

    doc: Document | None = None

    async def recv(self, seconds: float = TIMEOUT) -> Any:
        return await asyncio.wait_for(super().recv(), seconds)

    async def recv_until(self, msgtype: str, limit: int = 20) -> tuple[Any, list[Any]]:
        before = []
        for _ in range(limit):
            message = await self.recv()
            if message.msgtype == msgtype:
                return message, before
            before.append(message)
        raise AssertionError(f"no {msgtype} within {limit} messages; got {[m.msgtype for m in before]}")

    async def pull(self) -> Document:
        request = PROTOCOL.create("PULL-DOC-REQ")
        await self.send(request)
        reply, _ = await self.recv_until("PULL-DOC-REPLY")
        assert reply.header["reqid"] == request.header["msgid"]
        self.doc = Document()
        reply.push_to_document(self.doc)
        return self.doc

    def patch(self, change) -> Any:
        assert self.doc is not None
        events: list[Any] = []

        def collect(event: Any) -> None:
            events.append(event)

        self.doc.on_change(collect)
        try:
            change(self.doc)
        finally:
            self.doc.remove_on_change(collect)
        return PROTOCOL.create("PATCH-DOC", events)

    async def closed(self, seconds: float = TIMEOUT) -> list[Any]:
        """Read until the server closes the connection; return the frames that came first."""
        frames = []
        try:
            async with asyncio.timeout(seconds):
                while True:
                    frames.append(await self.ws.recv())
        except ConnectionClosed:
            return frames


def ws_url(server: LiveServer, app: str = "echo") -> str:
    return server.url.replace("http://", "ws://") + f"/{app}/ws"


async def connect(server: LiveServer, token: str | None = None, app: str = "echo", **kwargs: Any) -> Peer:
    """An accepted connection (subprotocol "bokeh", ACK first)."""
    ws = await websockets.connect(
        ws_url(server, app),
        subprotocols=["bokeh", token or make_token()],
        max_size=None,
        open_timeout=TIMEOUT,
        close_timeout=5,
        **kwargs,
    )
    peer = Peer(ws)
    assert ws.subprotocol == "bokeh"
    first = await peer.recv()
    assert first.msgtype == "ACK"
    return peer


def model(doc: Document, name: str) -> Any:
    found = doc.get_model_by_name(name)
    assert found is not None, f"no model named {name!r}"
    return found


def model_changes(message: Any) -> list[tuple[str, Any]]:
    return [
        (e.get("attr"), e.get("new")) for e in message.content["events"] if e.get("kind") == "ModelChanged"
    ]


def set_text(text: str):
    def change(doc: Document) -> None:
        model(doc, "text_input").value = text

    return change


async def round_trip(peer: Peer, text: str) -> None:
    """PATCH text_input.value; expect the callback's PATCH-DOC (output.text) and then OK."""
    if peer.doc is None:
        await peer.pull()
    patch = peer.patch(set_text(text))
    await peer.send(patch)
    ok, before = await peer.recv_until("OK")
    assert ok.header["reqid"] == patch.header["msgid"]
    for message in before:
        if message.msgtype == "PATCH-DOC":
            message.apply_to_document(peer.doc)
    assert model(peer.doc, "output").text == text.upper()


@pytest.fixture(scope="module")
def small_server():
    """A second runbokeh process whose WebSocket message limit is SMALL_LIMIT bytes."""
    live = LiveServer("--websocket-max-message-size", str(SMALL_LIMIT))
    yield live
    live.stop()


@pytest.fixture
async def peers(server):
    """Open connections to ``server``; all are closed after the test."""
    opened: list[Peer] = []

    async def open_(*args: Any, target: LiveServer | None = None, **kwargs: Any) -> Peer:
        peer = await connect(target or server, *args, **kwargs)
        opened.append(peer)
        return peer

    yield open_
    for peer in opened:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(peer.close(), 5)


# ---------------------------------------------------------------------------
# Every message type
# ---------------------------------------------------------------------------


async def test_connect_selects_bokeh_and_acks(peers):
    peer = await peers()
    assert peer.ws.subprotocol == "bokeh"


async def test_pull_doc(peers):
    peer = await peers()
    request = PROTOCOL.create("PULL-DOC-REQ")
    await peer.send(request)
    reply = await peer.recv()
    assert reply.msgtype == "PULL-DOC-REPLY"
    assert reply.header["reqid"] == request.header["msgid"]
    doc = Document()
    reply.push_to_document(doc)
    assert model(doc, "text_input").value == ""
    assert list(model(doc, "source").data["x"]) == [0, 0, 0]


async def test_patch_doc_round_trip(peers):
    peer = await peers()
    await round_trip(peer, "hello")
    await round_trip(peer, "world")


async def test_patch_doc_reaches_other_connections_of_the_session(peers):
    token = make_token()
    first, second = await peers(token), await peers(token)
    await first.pull()
    await second.pull()
    await round_trip(first, "to both")
    deadline = time.monotonic() + TIMEOUT

    def seen() -> bool:
        return (
            model(second.doc, "output").text == "TO BOTH"
            and model(second.doc, "text_input").value == "to both"
        )

    while not seen() and time.monotonic() < deadline:
        message, _ = await second.recv_until("PATCH-DOC")
        message.apply_to_document(second.doc)
    assert model(second.doc, "text_input").value == "to both"
    assert model(second.doc, "output").text == "TO BOTH"


async def test_push_doc(peers):
    peer = await peers()
    pushed = Document()
    pushed.add_root(Div(name="pushed", text="pushed raw"))
    message = PROTOCOL.create("PUSH-DOC", pushed)
    await peer.send(message)
    ok, _ = await peer.recv_until("OK")
    assert ok.header["reqid"] == message.header["msgid"]
    doc = await peer.pull()
    assert model(doc, "pushed").text == "pushed raw"


async def test_server_info(peers):
    peer = await peers()
    request = PROTOCOL.create("SERVER-INFO-REQ")
    await peer.send(request)
    reply = await peer.recv()
    assert reply.msgtype == "SERVER-INFO-REPLY"
    assert reply.header["reqid"] == request.header["msgid"]
    assert reply.content["version_info"] == {"bokeh": bokeh.__version__, "server": bokeh.__version__}


async def test_failing_patch_gets_error_without_traceback(peers):
    peer = await peers()
    await peer.pull()
    content = {"events": [{"kind": "ModelChanged", "model": {"id": "p-missing"}, "attr": "value", "new": 1}]}
    await peer.send_frames(json.dumps({"msgid": "e1", "msgtype": "PATCH-DOC"}), "{}", json.dumps(content))
    error = await peer.recv()
    assert error.msgtype == "ERROR"
    assert error.header["reqid"] == "e1"
    assert error.content["text"] and not error.content.get("traceback")
    assert "Traceback" not in error.content["text"] and "/" not in error.content["text"]
    await round_trip(peer, "alive")


# ---------------------------------------------------------------------------
# Refused upgrades: an HTTP error instead of 101, nothing accepted
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subprotocols", "kwargs"),
    [
        pytest.param(lambda: ["bokeh"], {}, id="one-subprotocol"),
        pytest.param(lambda: ["bokeh", make_token(), "x"], {}, id="three-subprotocols"),
        pytest.param(lambda: ["chat", make_token()], {}, id="first-not-bokeh"),
        pytest.param(lambda: ["bokeh", "garbage"], {}, id="garbage-token"),
        pytest.param(lambda: ["bokeh", make_token(expiration=-10)], {}, id="expired-token"),
        pytest.param(lambda: ["bokeh", make_token()], {"origin": "http://evil.example"}, id="bad-origin"),
    ],
)
async def test_refused_upgrade(server, subprotocols, kwargs):
    log_start = len(server.log)
    with pytest.raises(InvalidStatus) as info:
        ws = await websockets.connect(
            ws_url(server), subprotocols=subprotocols(), open_timeout=TIMEOUT, **kwargs
        )
        await ws.close()
    assert info.value.response.status_code == 403
    assert "Traceback" not in server.log[log_start:], "a refusal logged a traceback"


async def test_refused_upgrade_for_host_not_in_allowed_hosts(server):
    # Host: evil.example (a DNS-rebinding page), connected to 127.0.0.1.
    url = f"ws://evil.example:{server.port}/echo/ws"
    with pytest.raises(InvalidStatus) as info:
        ws = await websockets.connect(
            url,
            host="127.0.0.1",
            port=server.port,
            subprotocols=["bokeh", make_token()],
            origin=f"http://evil.example:{server.port}",
            open_timeout=TIMEOUT,
        )
        await ws.close()
    assert info.value.response.status_code == 403


async def test_refused_upgrade_for_unknown_app(server):
    log_start = len(server.log)
    with pytest.raises(InvalidStatus) as info:
        ws = await websockets.connect(
            ws_url(server, "no-such-app"), subprotocols=["bokeh", make_token()], open_timeout=TIMEOUT
        )
        await ws.close()
    status = info.value.response.status_code
    assert status in (403, 404), f"unknown app answered {status} (expected a refusal, not a server error)"
    assert "Traceback" not in server.log[log_start:], "a refusal logged a traceback"


# ---------------------------------------------------------------------------
# Binary buffers both ways: 1,000,000 float64 (8 MB)
# ---------------------------------------------------------------------------


async def test_big_buffer_client_to_server(peers):
    peer = await peers()
    await peer.pull()
    values = np.random.default_rng(7).random(BIG)

    def change(doc: Document) -> None:
        model(doc, "source").data = {"x": values}

    patch = peer.patch(change)
    assert len(patch.buffers) == 1 and len(patch.buffers[0].to_bytes()) == 8 * BIG
    await peer.send(patch)
    ok, before = await peer.recv_until("OK")
    assert ok.header["reqid"] == patch.header["msgid"]
    received = [
        new for m in before if m.msgtype == "PATCH-DOC" for attr, new in model_changes(m) if attr == "text"
    ]
    assert received == [f"{BIG}:{float(values.sum())}"]
    await round_trip(peer, "after big")


async def test_big_buffer_server_to_client(peers):
    peer = await peers()
    await peer.pull()
    patch = peer.patch(set_text("send-big"))
    await peer.send(patch)
    _, before = await peer.recv_until("OK")
    big = [m for m in before if m.msgtype == "PATCH-DOC" and m.buffers]
    assert len(big) == 1, [m.content for m in before]
    assert [len(b.to_bytes()) for b in big[0].buffers] == [8 * BIG]
    for message in before:
        if message.msgtype == "PATCH-DOC":
            message.apply_to_document(peer.doc)
    x = np.asarray(model(peer.doc, "source").data["x"])
    assert x.dtype == np.float64
    np.testing.assert_array_equal(x, np.arange(BIG, dtype=np.float64))
    assert model(peer.doc, "output").text == "SEND-BIG"
    await round_trip(peer, "after send-big")


# ---------------------------------------------------------------------------
# Malformed frames close only that connection, with a 4000-4999 code and a reason
# ---------------------------------------------------------------------------


def _header(**fields: Any) -> str:
    return json.dumps({"msgid": "m1", "msgtype": "PATCH-DOC", **fields})


_EVENTS = json.dumps({"events": []})


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param(["not json", "{}", "{}"], id="header-not-json"),
        pytest.param(["[]", "{}", "{}"], id="header-not-object"),
        pytest.param([_header(msgtype="EXPLODE"), "{}", "{}"], id="unknown-msgtype"),
        pytest.param([_header(msgtype="é" * 200), "{}", "{}"], id="long-unicode-msgtype"),
        pytest.param([b"binary header"], id="binary-header"),
        pytest.param([_header(), "{}", "{not json"], id="content-not-json"),
        pytest.param([_header(num_buffers=-1), "{}", _EVENTS], id="negative-num-buffers"),
        pytest.param([_header(num_buffers=10**12), "{}", _EVENTS], id="huge-num-buffers"),
        pytest.param(
            [_header(num_buffers=1), "{}", _EVENTS, '{"id": "b"}', "text payload"], id="text-buffer"
        ),
        pytest.param([_header(num_buffers=1), "{}", _EVENTS, '{"ref": "b"}'], id="bad-buffer-header"),
        pytest.param(
            [_header(num_buffers=1), "{}", _EVENTS, b"binary buffer header"], id="binary-buffer-header"
        ),
    ],
)
async def test_malformed_frames_close_only_that_connection(peers, frames):
    bystander = await peers()
    await round_trip(bystander, "before")
    victim = await peers()
    await victim.send_frames(*frames)
    try:
        await victim.send(PROTOCOL.create("SERVER-INFO-REQ"))  # queued behind: must not be answered
    except ConnectionClosed:
        pass
    answered = await victim.closed()
    assert not any(isinstance(f, str) and "SERVER-INFO-REPLY" in f for f in answered)
    code, reason = victim.ws.close_code, victim.ws.close_reason
    assert code is not None and 4000 <= code <= 4999, f"close code {code!r} ({reason!r})"
    assert reason, "no close reason"
    await round_trip(bystander, "after")
    await round_trip(await peers(), "new session")


# ---------------------------------------------------------------------------
# Oversize messages (server started with --websocket-max-message-size 100000)
# ---------------------------------------------------------------------------


async def _oversize_case(peers, small_server, columns: dict[str, int]) -> Peer:
    bystander = await peers(target=small_server)
    await round_trip(bystander, "before")
    victim = await peers(target=small_server)
    await victim.pull()

    def change(doc: Document) -> None:
        model(doc, "source").data = {name: np.ones(n) for name, n in columns.items()}

    patch = victim.patch(change)
    try:
        await victim.send(patch)
    except ConnectionClosed:
        pass
    answered = await victim.closed()
    assert not any(isinstance(f, str) and '"OK"' in f for f in answered), "the oversize message was accepted"
    await round_trip(bystander, "after")
    await round_trip(await peers(target=small_server), "new session")
    return victim


async def test_oversize_single_frame_closes_only_that_connection(peers, small_server):
    # One 200,000-byte binary frame, over the 100,000-byte limit. autobahn (daphne) enforces the
    # frame limit itself and drops the TCP connection (the client sees 1006, no close frame).
    victim = await _oversize_case(peers, small_server, {"x": 25_000})
    assert victim.ws.close_code is not None


async def test_oversize_message_of_small_frames_closes_with_a_reason(peers, small_server):
    # Two 60,000-byte buffers: every frame is under the limit, the message is not.
    victim = await _oversize_case(peers, small_server, {"x": 7_500, "y": 7_500})
    assert victim.ws.close_code == 4003, (victim.ws.close_code, victim.ws.close_reason)
    assert victim.ws.close_reason


async def test_message_under_the_small_limit_is_accepted(peers, small_server):
    peer = await peers(target=small_server)
    await peer.pull()
    values = np.arange(5_000, dtype=np.float64)  # 40,000 bytes

    def change(doc: Document) -> None:
        model(doc, "source").data = {"x": values}

    patch = peer.patch(change)
    await peer.send(patch)
    _, before = await peer.recv_until("OK")
    texts = [
        new for m in before if m.msgtype == "PATCH-DOC" for attr, new in model_changes(m) if attr == "text"
    ]
    assert texts == [f"5000:{float(values.sum())}"]


# ---------------------------------------------------------------------------
# bokeh.client
# ---------------------------------------------------------------------------


def run_until(
    session: Any, io_loop: IOLoop, model_: Any, attr: str, predicate, timeout: float = TIMEOUT
) -> None:
    """Run the client's loop, applying the server's PATCH-DOCs, until ``predicate(model_)``; closes the session.

    bokeh.client drops PATCH-DOCs that arrive while it waits for a reply (its WAITING_FOR_REPLY
    state ignores every other message), so ``force_roundtrip()`` alone never shows a callback's
    change: the same happens against ``bokeh serve``. The session's loop-until-closed (private
    in bokeh 3, once the public ``loop_until_closed``) applies them.
    """

    def check(attr_name: str, old: Any, new: Any) -> None:
        if predicate(model_):
            session.close()

    model_.on_change(attr, check)
    deadline = io_loop.call_later(timeout, session.close)
    try:
        session._loop_until_closed()
    finally:
        io_loop.remove_timeout(deadline)
        model_.remove_on_change(attr, check)


@pytest.fixture
def io_loop():
    loop = IOLoop()
    yield loop
    loop.close(all_fds=True)


@pytest.mark.timeout(90)
def test_pull_session_change_reaches_server_callbacks(server, io_loop):
    session = pull_session(url=server.url + "/echo", io_loop=io_loop)
    try:
        assert session.connected
        doc = session.document
        text_input = doc.get_model_by_name("text_input")
        output = doc.get_model_by_name("output")
        assert text_input is not None and output is not None
        assert output.text == ""
        text_input.value = "first"
        session.force_roundtrip()  # the PATCH-DOC is out and handled once the reply is in
        text_input.value = "from bokeh.client"
        run_until(session, io_loop, output, "text", lambda m: m.text == "FROM BOKEH.CLIENT")
        assert output.text == "FROM BOKEH.CLIENT"
    finally:
        session.close()
    assert not session.connected
    # The server's document holds both changes: pull the same session again.
    with pull_session(session_id=session.id, url=server.url + "/echo") as again:
        assert again.document.get_model_by_name("text_input").value == "from bokeh.client"
        assert again.document.get_model_by_name("output").text == "FROM BOKEH.CLIENT"


@pytest.mark.timeout(90)
def test_pull_session_server_info_and_big_update(server, io_loop):
    with pull_session(url=server.url + "/echo", io_loop=io_loop) as session:
        info = session.request_server_info()
        assert info["version_info"] == {"bokeh": bokeh.__version__, "server": bokeh.__version__}
        source = session.document.get_model_by_name("source")
        session.document.get_model_by_name("text_input").value = "send-big"
        run_until(session, io_loop, source, "data", lambda m: len(m.data["x"]) == BIG)
        np.testing.assert_array_equal(np.asarray(source.data["x"]), np.arange(BIG, dtype=np.float64))


@pytest.mark.timeout(90)
def test_push_session_then_pull_the_same_session(server):
    doc = Document()
    doc.add_root(Div(name="pushed", text="pushed by bokeh.client"))
    pushed = push_session(doc, url=server.url + "/echo")
    try:
        session_id = pushed.id
    finally:
        pushed.close()
    with pull_session(session_id=session_id, url=server.url + "/echo") as session:
        div = session.document.get_model_by_name("pushed")
        assert div is not None and div.text == "pushed by bokeh.client"
        assert session.document.get_model_by_name("text_input") is None


@pytest.mark.timeout(90)
def test_pull_session_arguments_reach_session_context(server):
    with pull_session(url=server.url + "/hooks", arguments={"a": "1"}) as session:
        info = session.document.get_model_by_name("info")
        assert info is not None
        assert info.text.startswith("args=['a']"), info.text

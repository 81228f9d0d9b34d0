"""Protocol tests: Channels' WebsocketCommunicator drives tests.asgi.application in-process.

The session runtime is process-global and runs on the event loop; pytest-asyncio gives every
test its own loop, so the ``fresh_runtime`` fixture shuts the runtime down after each test.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import bokeh
import pytest
from bokeh.document import Document
from bokeh.models import Div
from bokeh.protocol import Protocol
from channels.testing import WebsocketCommunicator

from bokehserve_django.protocol import CloseCode
from bokehserve_django.sessions import runtime
from tests.asgi import application
from tests.bokeh_client import make_token

PROTOCOL = Protocol()
#: Seconds to wait for any one frame; the first session of a test imports and runs the app.
TIMEOUT = 10
#: What a browser on the test site sends (tests/settings.py ALLOWED_HOSTS has 127.0.0.1).
HEADERS = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]


# ---------------------------------------------------------------------------
# A message-level client over a WebsocketCommunicator
# ---------------------------------------------------------------------------


class Peer:
    """One accepted WebSocket: sends and receives whole Bokeh messages; keeps a client-side Document."""

    def __init__(self, communicator: WebsocketCommunicator, token: str) -> None:
        self.communicator = communicator
        self.token = token
        self.doc: Document | None = None

    async def frame(self, seconds: float = TIMEOUT) -> str | bytes:
        output = await self.communicator.receive_output(seconds)
        assert output["type"] == "websocket.send", f"expected a frame, got {output!r}"
        if output.get("text") is not None:
            return output["text"]
        return output["bytes"]

    async def recv(self, seconds: float = TIMEOUT) -> Any:
        header_json = await self.frame(seconds)
        metadata_json = await self.frame(seconds)
        content_json = await self.frame(seconds)
        assert (
            isinstance(header_json, str) and isinstance(metadata_json, str) and isinstance(content_json, str)
        )
        message = PROTOCOL.assemble(header_json, metadata_json, content_json)
        for _ in range(message.header.get("num_buffers", 0)):
            buffer_header = await self.frame(seconds)
            payload = await self.frame(seconds)
            assert isinstance(buffer_header, str) and isinstance(payload, bytes)
            message.assemble_buffer(json.loads(buffer_header), payload)
        return message

    async def recv_until(self, msgtype: str, limit: int = 20) -> tuple[Any, list[Any]]:
        """The next message of ``msgtype`` and the messages that came before it."""
        before = []
        for _ in range(limit):
            message = await self.recv()
            if message.msgtype == msgtype:
                return message, before
            before.append(message)
        raise AssertionError(f"no {msgtype} within {limit} messages; got {[m.msgtype for m in before]}")

    async def send_frames(self, *frames: str | bytes) -> None:
        for frame in frames:
            if isinstance(frame, bytes):
                await self.communicator.send_to(bytes_data=frame)
            else:
                await self.communicator.send_to(text_data=frame)

    async def send(self, message: Any) -> None:
        frames: list[str | bytes] = [message.header_json, message.metadata_json, message.content_json]
        for buffer in message.buffers:
            frames += [json.dumps(buffer.ref), buffer.to_bytes()]
        await self.send_frames(*frames)

    async def expect_close(self, seconds: float = TIMEOUT) -> dict[str, Any]:
        """Skip frames until the server closes; return the websocket.close event."""
        for _ in range(100):
            output = await self.communicator.receive_output(seconds)
            if output["type"] == "websocket.close":
                return output
        raise AssertionError("the server kept sending and never closed")

    async def pull(self) -> Document:
        request = PROTOCOL.create("PULL-DOC-REQ")
        await self.send(request)
        reply, _ = await self.recv_until("PULL-DOC-REPLY")
        assert reply.header["reqid"] == request.header["msgid"]
        self.doc = Document()
        reply.push_to_document(self.doc)
        return self.doc

    def patch(self, change) -> Any:
        """A PATCH-DOC carrying the events that ``change(doc)`` causes in the client-side document."""
        assert self.doc is not None
        events = []

        def collect(event: Any) -> None:
            events.append(event)

        self.doc.on_change(collect)
        try:
            change(self.doc)
        finally:
            self.doc.remove_on_change(collect)
        return PROTOCOL.create("PATCH-DOC", events)


def model(doc: Document, name: str) -> Any:
    found = doc.get_model_by_name(name)
    assert found is not None, f"no model named {name!r} in the document"
    return found


def set_text(text: str):
    def change(doc: Document) -> None:
        model(doc, "text_input").value = text

    return change


def model_changes(message: Any) -> list[tuple[str, Any]]:
    """(attr, new) of each ModelChanged event in a PATCH-DOC's content."""
    return [
        (e.get("attr"), e.get("new")) for e in message.content["events"] if e.get("kind") == "ModelChanged"
    ]


async def round_trip(peer: Peer, text: str) -> None:
    """PATCH text_input.value: expect OK for it and a PATCH-DOC setting output.text to the upper case."""
    if peer.doc is None:
        await peer.pull()
    patch = peer.patch(set_text(text))
    await peer.send(patch)
    ok, before = await peer.recv_until("OK")
    assert ok.header["reqid"] == patch.header["msgid"]
    patches = [m for m in before if m.msgtype == "PATCH-DOC"]
    assert ("text", text.upper()) in [c for m in patches for c in model_changes(m)], (
        f"no PATCH-DOC setting output.text before the OK; got {[m.content for m in before]}"
    )
    for message in patches:
        message.apply_to_document(peer.doc)
    assert model(peer.doc, "output").text == text.upper()


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------



@pytest.fixture
async def open_ws(fresh_runtime):
    """Factory of WebsocketCommunicators; each is disconnected after the test."""
    communicators: list[WebsocketCommunicator] = []

    def open_(
        path: str = "/echo/ws",
        token: str | None = None,
        subprotocols: list[str] | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> WebsocketCommunicator:
        if subprotocols is None:
            subprotocols = ["bokeh", token or make_token()]
        communicator = WebsocketCommunicator(
            application, path, headers=HEADERS if headers is None else headers, subprotocols=subprotocols
        )
        communicators.append(communicator)
        return communicator

    yield open_
    for communicator in communicators:
        with contextlib.suppress(BaseException):
            await communicator.disconnect(timeout=TIMEOUT)


@pytest.fixture
async def connect(open_ws):
    """Open an accepted connection: subprotocol "bokeh" selected and ACK first; returns a Peer."""

    async def connect_(path: str = "/echo/ws", token: str | None = None, **kwargs: Any) -> Peer:
        token = token or make_token()
        communicator = open_ws(path, token=token, **kwargs)
        connected, subprotocol = await communicator.connect(timeout=TIMEOUT)
        assert connected, f"connection refused with close code {subprotocol}"
        assert subprotocol == "bokeh"
        peer = Peer(communicator, token)
        first = await peer.recv()
        assert first.msgtype == "ACK"
        return peer

    return connect_


# ---------------------------------------------------------------------------
# Handshake and every message type
# ---------------------------------------------------------------------------


async def test_connect_selects_bokeh_and_first_message_is_ack(open_ws):
    communicator = open_ws()
    connected, subprotocol = await communicator.connect(timeout=TIMEOUT)
    assert connected
    assert subprotocol == "bokeh"
    header = json.loads(await communicator.receive_from(TIMEOUT))
    assert header["msgtype"] == "ACK"
    assert isinstance(header["msgid"], str)
    assert "reqid" not in header
    assert json.loads(await communicator.receive_from(TIMEOUT)) == {}  # metadata
    assert json.loads(await communicator.receive_from(TIMEOUT)) == {}  # content
    assert await communicator.receive_nothing(0.2)


async def test_connect_creates_the_session_named_by_the_token(connect):
    token = make_token()
    await connect(token=token)
    from bokeh.util.token import get_session_id

    assert get_session_id(token) in runtime.app("echo")


async def test_pull_doc_req_gets_reply_with_reqid_and_the_document(connect):
    peer = await connect()
    request = PROTOCOL.create("PULL-DOC-REQ")
    await peer.send(request)
    reply = await peer.recv()
    assert reply.msgtype == "PULL-DOC-REPLY"
    assert reply.header["reqid"] == request.header["msgid"]
    assert "doc" in reply.content
    doc = Document()
    reply.push_to_document(doc)
    assert model(doc, "text_input").value == ""
    assert model(doc, "output").text == ""
    assert list(model(doc, "source").data["x"]) == [0, 0, 0]


async def test_patch_doc_gets_ok_and_a_patch_back_from_the_python_callback(connect):
    peer = await connect()
    await round_trip(peer, "hello")
    await round_trip(peer, "again")


async def test_patch_doc_does_not_echo_the_change_to_its_sender(connect):
    peer = await connect()
    await peer.pull()
    patch = peer.patch(set_text("no echo"))
    await peer.send(patch)
    _, before = await peer.recv_until("OK")
    changes = [c for m in before if m.msgtype == "PATCH-DOC" for c in model_changes(m)]
    assert ("value", "no echo") not in changes
    assert ("text", "NO ECHO") in changes


async def test_patch_doc_reaches_the_other_connections_of_the_session(connect):
    token = make_token()
    first = await connect(token=token)
    second = await connect(token=token)
    await first.pull()
    await second.pull()
    await round_trip(first, "shared")
    # The other connection gets both the client's value and the callback's text, in either order.
    changes: list[tuple[str, Any]] = []
    while not {("value", "shared"), ("text", "SHARED")} <= set(changes):
        message, _ = await second.recv_until("PATCH-DOC")
        changes += model_changes(message)
    assert await second.communicator.receive_nothing(0.2)


async def test_push_doc_gets_ok_and_replaces_the_document(connect):
    peer = await connect()
    pushed = Document()
    pushed.add_root(Div(name="pushed", text="from the client"))
    message = PROTOCOL.create("PUSH-DOC", pushed)
    await peer.send(message)
    # As in bokeh serve, replacing the document also patches every connection (the sender too).
    ok, before = await peer.recv_until("OK")
    assert {m.msgtype for m in before} <= {"PATCH-DOC"}
    assert ok.header["reqid"] == message.header["msgid"]
    doc = await peer.pull()
    assert model(doc, "pushed").text == "from the client"
    assert doc.get_model_by_name("text_input") is None


async def test_server_info_req_gets_version_info(connect):
    peer = await connect()
    request = PROTOCOL.create("SERVER-INFO-REQ")
    await peer.send(request)
    reply = await peer.recv()
    assert reply.msgtype == "SERVER-INFO-REPLY"
    assert reply.header["reqid"] == request.header["msgid"]
    assert reply.content["version_info"] == {"bokeh": bokeh.__version__, "server": bokeh.__version__}


async def test_failing_patch_gets_a_short_error_and_the_connection_lives_on(connect):
    peer = await connect()
    await peer.pull()
    header = {"msgid": "bad-patch", "msgtype": "PATCH-DOC"}
    content = {
        "events": [
            {"kind": "ModelChanged", "model": {"id": "p-no-such-model"}, "attr": "value", "new": "x"},
        ]
    }
    await peer.send_frames(json.dumps(header), "{}", json.dumps(content))
    error = await peer.recv()
    assert error.msgtype == "ERROR"
    assert error.header["reqid"] == "bad-patch"
    assert error.content["text"]
    assert not error.content.get("traceback")
    assert "Traceback" not in error.content["text"] and "/" not in error.content["text"]
    await round_trip(peer, "still alive")


# ---------------------------------------------------------------------------
# Refusals: the connection is never accepted, and no session is created
# ---------------------------------------------------------------------------


def _refusal_cases() -> list[Any]:
    good = make_token
    return [
        pytest.param({"subprotocols": ["bokeh"]}, id="one-subprotocol"),
        pytest.param({"subprotocols": []}, id="no-subprotocol"),
        pytest.param({"subprotocols": lambda: ["bokeh", good(), "extra"]}, id="three-subprotocols"),
        pytest.param({"subprotocols": lambda: [good(), "bokeh"]}, id="token-first"),
        pytest.param({"subprotocols": lambda: ["chat", good()]}, id="first-not-bokeh"),
        pytest.param({"token": "garbage"}, id="garbage-token"),
        pytest.param({"token": "eyJub3QiOiAiYSB0b2tlbiJ9"}, id="token-without-session-id"),
        pytest.param({"token": lambda: make_token("bad/id!")}, id="malformed-session-id"),
        pytest.param({"token": lambda: make_token(expiration=-10)}, id="expired-token"),
        pytest.param(
            {"headers": [(b"origin", b"http://evil.example"), (b"host", b"127.0.0.1")]}, id="bad-origin"
        ),
        pytest.param({"headers": [(b"origin", b"null"), (b"host", b"127.0.0.1")]}, id="null-origin"),
        pytest.param(
            {"headers": [(b"origin", b"http://evil.example"), (b"host", b"evil.example")]}, id="rebinding"
        ),
        pytest.param({"headers": [(b"host", b"evil.example")]}, id="host-not-allowed"),
        pytest.param({"headers": []}, id="no-host"),
    ]


@pytest.mark.parametrize("case", _refusal_cases())
async def test_refused_before_accept(open_ws, case):
    kwargs = {key: value() if callable(value) else value for key, value in case.items()}
    communicator = open_ws(**kwargs)
    connected, _code = await communicator.connect(timeout=TIMEOUT)
    assert not connected, "the upgrade was accepted"
    assert len(runtime.app("echo").sessions) == 0, "a refused upgrade created a session"


async def test_unknown_app_is_refused_before_accept(open_ws):
    communicator = open_ws("/no-such-app/ws")
    try:
        # Short timeout: when the application raises, the communicator only notices at the timeout.
        connected, _ = await communicator.connect(timeout=2)
    except ValueError as exc:
        pytest.fail(
            f"the WebSocket router raised {exc!r} instead of refusing the upgrade "
            "(daphne answers 500 and logs a traceback per attempt)"
        )
    assert not connected


async def test_refusal_of_one_upgrade_leaves_others_working(open_ws, connect):
    refused = open_ws(token=make_token(expiration=-10))
    connected, _ = await refused.connect(timeout=TIMEOUT)
    assert not connected
    await round_trip(await connect(), "after a refusal")


# ---------------------------------------------------------------------------
# Malformed input: close with a 4000-4999 code and a reason; other sessions unaffected
# ---------------------------------------------------------------------------


def _header(**fields: Any) -> str:
    return json.dumps({"msgid": "m1", "msgtype": "PATCH-DOC", **fields})


_EVENTS = json.dumps({"events": []})

MALFORMED = [
    pytest.param(["not json", "{}", "{}"], CloseCode.PROTOCOL_ERROR, id="header-not-json"),
    pytest.param(["[1, 2]", "{}", "{}"], CloseCode.PROTOCOL_ERROR, id="header-is-a-list"),
    pytest.param(['"PULL-DOC-REQ"', "{}", "{}"], CloseCode.PROTOCOL_ERROR, id="header-is-a-string"),
    pytest.param(
        ['{"msgtype": "PULL-DOC-REQ"}', "{}", "{}"], CloseCode.PROTOCOL_ERROR, id="header-without-msgid"
    ),
    pytest.param([_header(msgtype="EXPLODE"), "{}", "{}"], CloseCode.PROTOCOL_ERROR, id="unknown-msgtype"),
    pytest.param([_header(msgtype="ACK"), "{}", "{}"], CloseCode.PROTOCOL_ERROR, id="server-only-msgtype"),
    pytest.param(
        [_header(msgtype="é" * 200), "{}", "{}"], CloseCode.PROTOCOL_ERROR, id="long-unicode-msgtype"
    ),
    pytest.param([b"\x00\x01binary header"], CloseCode.PROTOCOL_ERROR, id="binary-header"),
    pytest.param([_header(), b"\x00binary metadata"], CloseCode.PROTOCOL_ERROR, id="binary-metadata"),
    pytest.param([_header(), "{}", b"\x00binary content"], CloseCode.PROTOCOL_ERROR, id="binary-content"),
    pytest.param([_header(), "{}", "{not json"], CloseCode.PROTOCOL_ERROR, id="content-not-json"),
    pytest.param(
        [_header(num_buffers=-1), "{}", _EVENTS], CloseCode.PROTOCOL_ERROR, id="negative-num-buffers"
    ),
    pytest.param(
        [_header(num_buffers="1"), "{}", _EVENTS], CloseCode.PROTOCOL_ERROR, id="string-num-buffers"
    ),
    pytest.param([_header(num_buffers=1.5), "{}", _EVENTS], CloseCode.PROTOCOL_ERROR, id="float-num-buffers"),
    pytest.param(
        [_header(num_buffers=10**12), "{}", _EVENTS], CloseCode.MESSAGE_TOO_BIG, id="huge-num-buffers"
    ),
    pytest.param(
        [_header(num_buffers=1), "{}", _EVENTS, '{"id": "b1"}', "text where binary is due"],
        CloseCode.PROTOCOL_ERROR,
        id="text-buffer-payload",
    ),
    pytest.param(
        [_header(num_buffers=1), "{}", _EVENTS, b"\x00binary buffer header"],
        CloseCode.PROTOCOL_ERROR,
        id="binary-buffer-header",
    ),
    pytest.param(
        [_header(num_buffers=1), "{}", _EVENTS, "not json"],
        CloseCode.PROTOCOL_ERROR,
        id="buffer-header-not-json",
    ),
    pytest.param(
        [_header(num_buffers=1), "{}", _EVENTS, '{"id": 7}'], CloseCode.PROTOCOL_ERROR, id="buffer-id-not-str"
    ),
    pytest.param(
        [_header(num_buffers=1), "{}", _EVENTS, '{"id": "b1", "x": 1}'],
        CloseCode.PROTOCOL_ERROR,
        id="buffer-header-extra-key",
    ),
    pytest.param(
        [_header(num_buffers=1), "{}", _EVENTS, '["b1"]'], CloseCode.PROTOCOL_ERROR, id="buffer-header-a-list"
    ),
]


@pytest.mark.parametrize(("frames", "expected_code"), MALFORMED)
async def test_malformed_input_closes_only_that_connection(connect, frames, expected_code):
    victim = await connect()
    bystander = await connect()
    await round_trip(bystander, "before")
    await victim.send_frames(*frames)
    # A valid request queued behind the bad frames must not be answered.
    await victim.send(PROTOCOL.create("SERVER-INFO-REQ"))
    close = await victim.expect_close()
    code, reason = close.get("code"), close.get("reason")
    assert code is not None and 4000 <= code <= 4999, f"close code {code!r}"
    assert code == expected_code
    assert reason, "the close carries no reason"
    assert len(reason.encode("utf-8")) <= 123, "a close reason may hold at most 123 UTF-8 bytes"
    assert "Traceback" not in reason
    assert await victim.communicator.receive_nothing(0.3), "frames after the close were answered"
    await round_trip(bystander, "after")
    await round_trip(await connect(), "new session")


async def test_malformed_input_after_a_pull_still_closes(connect):
    peer = await connect()
    await peer.pull()
    await peer.send_frames(b"binary where a header is due")
    close = await peer.expect_close()
    assert 4000 <= close["code"] <= 4999
    assert close.get("reason")

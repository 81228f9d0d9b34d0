"""A minimal Bokeh protocol client for timing: raw HTTP GET, raw WebSocket, no Document on our side.

What a browser does to open a session, minus the static files:

1. ``GET /<app>``: the server creates the session (``bokeh serve`` runs the app code here) and the
   page embeds ``"token": "<token>"`` for BokehJS;
2. WebSocket to ``/<app>/ws`` offering the subprotocols ``["bokeh", token]``, with an ``Origin``
   header as a browser sends it;
3. wait for ``ACK``; send ``PULL-DOC-REQ``; wait for ``PULL-DOC-REPLY``; send ``document_ready``
   (a PATCH-DOC, as BokehJS does once it has rendered; not timed).

Messages are framed as in ``bokeh/protocol``: header, metadata and content text frames, then per
buffer a ``{"id": ...}`` text frame and a binary frame. The reader runs in a background task and
timestamps every message when its last frame arrives, so timings do not depend on who awaits.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

# "token": "..." as bokeh's template writes it; also HTML- or JS-escaped quotes, in case a template escapes them.
_Q = r'(?:"|&quot;|&#34;|\\u0022|\\")'
_TOKEN_RE = re.compile(_Q + r"token" + _Q + r"\s*:\s*" + _Q + r"([A-Za-z0-9_\-.]+)")
_msgids = itertools.count(1)


def new_msgid() -> str:
    return f"bench{next(_msgids)}"


class BenchError(Exception):
    """A server did not behave as the benchmark needs (bad status, no token, protocol error)."""


# ---------------------------------------------------------------------------------------------
# HTTP


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


async def http_get(host: str, port: int, path: str, timeout: float = 30.0) -> HttpResponse:
    """One HTTP/1.1 GET on a fresh connection (``Connection: close``), like a first page load."""

    async def _get() -> HttpResponse:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: bokeh-bench\r\n"
                "Accept: text/html\r\nConnection: close\r\n\r\n"
            )
            writer.write(request.encode("ascii"))
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            if "content-length" in headers:
                body = await reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        break
                    chunks.append(await reader.readexactly(size))
                    await reader.readexactly(2)
                body = b"".join(chunks)
            else:
                body = await reader.read()
            return HttpResponse(status, headers, body)
        finally:
            writer.close()

    return await asyncio.wait_for(_get(), timeout)


def _gist(body: bytes, limit: int = 300) -> str:
    """The informative part of an error page: its <pre> or <title>, else its start."""
    text = body.decode("utf-8", "replace")
    for pattern in (r"<pre[^>]*>(.*?)</pre>", r"<title>(.*?)</title>"):
        match = re.search(pattern, text, re.S | re.I)
        if match and match.group(1).strip():
            text = match.group(1)
            break
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")


def token_from_page(body: bytes) -> str:
    match = _TOKEN_RE.search(body.decode("utf-8", "replace"))
    if match is None:
        raise BenchError('no "token" found in the page HTML')
    return match.group(1)


# ---------------------------------------------------------------------------------------------
# Messages


@dataclass
class Message:
    header: dict[str, Any]
    content: dict[str, Any]
    buffers: dict[str, bytes]
    received: float  # time.perf_counter() when the last frame arrived
    received_wall: float = 0.0  # time.time() at the same moment (to compare with server stamps)

    @property
    def msgtype(self) -> str:
        return self.header.get("msgtype", "")


def find_model_id(doc_json: Any, name: str) -> str:
    """The id of the model whose ``name`` attribute is ``name`` in a serialized document.

    Panel widgets leave bokeh's ``name`` empty and put their own name in ``title``: such a
    model is found by its title.
    """
    stack = [doc_json]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            attrs = node.get("attributes")
            if node.get("type") == "object" and isinstance(attrs, dict) and name in (
                attrs.get("name"),
                attrs.get("title") if attrs.get("name") is None else None,
            ):
                return node["id"]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    raise BenchError(f"no model named {name!r} in the document")


def iter_events(message: Message):
    if message.msgtype == "PATCH-DOC":
        yield from message.content.get("events", [])


def ndarray_length(value: Any) -> int:
    """Rows in a serialized column: an ndarray (with shape) or a plain list."""
    if isinstance(value, dict) and value.get("type") == "ndarray":
        shape = value.get("shape") or [0]
        return int(shape[0])
    if isinstance(value, dict) and value.get("type") == "typed_array":
        return int(value.get("length", 0))
    if isinstance(value, list):
        return len(value)
    return 0


def map_entries(value: Any) -> dict[str, Any]:
    """Decode a serialized ``{"type": "map", "entries": [...]}`` (or a plain dict) to a dict."""
    if isinstance(value, dict) and value.get("type") == "map":
        return dict(value.get("entries", []))
    if isinstance(value, dict):
        return value
    return {}


def buffer_of(value: Any, buffers: dict[str, bytes]) -> bytes | None:
    """The binary buffer behind a serialized ndarray column, if it came as a binary frame."""
    if not isinstance(value, dict):
        return None
    array = value.get("array", value)
    data = array.get("data") if isinstance(array, dict) else None
    if isinstance(data, str):  # inline base64 instead of a binary frame
        return base64.b64decode(data)
    ref = data.get("id") if isinstance(data, dict) else None
    if ref is None and isinstance(array, dict):
        ref = array.get("id")
    return buffers.get(ref) if ref is not None else None


# ---------------------------------------------------------------------------------------------
# Connection


@dataclass
class OpenTimings:
    http: float = 0.0  # GET of the page, seconds
    ws_ack: float = 0.0  # WebSocket handshake until ACK
    pull: float = 0.0  # PULL-DOC-REQ until PULL-DOC-REPLY
    total: float = 0.0


@dataclass
class Session:
    """One live session: a WebSocket, a reader task, and the pulled document JSON."""

    ws: ClientConnection
    doc: dict[str, Any] = field(default_factory=dict)
    token: str = ""
    timings: OpenTimings = field(default_factory=OpenTimings)
    on_message: Callable[[Message], None] | None = None
    _queue: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    _reader: asyncio.Task[None] | None = None
    error: BaseException | None = None

    # -- lifecycle --------------------------------------------------------------------------

    @classmethod
    async def open(cls, host: str, port: int, app: str, timeout: float = 60.0, ws_port: int | None = None) -> Session:
        """Page GET, WebSocket (on ``ws_port`` if given: another process of a cluster, with the
        page's Origin as a browser sends it), ACK, PULL-DOC. ``session.token`` is the page's token."""
        t0 = time.perf_counter()
        page = await http_get(host, port, f"/{app}", timeout=timeout)
        t1 = time.perf_counter()
        if page.status != 200:
            raise BenchError(f"GET /{app} returned HTTP {page.status}: {_gist(page.body)}")
        token = token_from_page(page.body)
        ws = await connect(
            f"ws://{host}:{ws_port or port}/{app}/ws",
            subprotocols=["bokeh", token],  # type: ignore[list-item]
            origin=f"http://{host}:{port}",  # type: ignore[arg-type]
            compression=None,
            max_size=None,
            ping_interval=None,
            # No proxy: the servers are on loopback, and looking one up (websockets reads the
            # *_proxy environment variables on every connect) is client CPU the bench counts.
            proxy=None,
            open_timeout=timeout,
            close_timeout=2,
        )
        session = cls(ws)
        session._reader = asyncio.create_task(session._read_loop())
        try:
            ack = await session.next_message(timeout)
            if ack.msgtype != "ACK":
                raise BenchError(f"first message was {ack.msgtype}, not ACK")
            t2 = time.perf_counter()
            reply = await session.request("PULL-DOC-REQ", {}, timeout=timeout)
            if reply.msgtype != "PULL-DOC-REPLY":
                raise BenchError(f"PULL-DOC-REQ answered with {reply.msgtype}: {reply.content}")
            t3 = reply.received
            # As BokehJS does once it has rendered; not part of the open's timings.
            await session.document_ready()
        except BaseException:
            await session.close()
            raise
        session.doc = reply.content["doc"]
        session.token = token
        session.timings = OpenTimings(http=t1 - t0, ws_ack=t2 - t1, pull=t3 - t2, total=t3 - t0)
        return session

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.ws.close(), 5)
        except Exception:  # TimeoutError too
            pass
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass

    # -- receiving --------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        ws = self.ws
        try:
            while True:
                header = json.loads(await ws.recv())
                await ws.recv()  # metadata, ignored by Bokeh
                content_frame = await ws.recv()
                buffers: dict[str, bytes] = {}
                count = int(header.get("num_buffers", 0) or 0)
                for i in range(count):
                    ref = json.loads(await ws.recv())
                    payload = await ws.recv()
                    if not isinstance(payload, bytes):
                        raise BenchError(
                            f"{header.get('msgtype')} announced {count} buffer(s); after the header of buffer "
                            f"{i + 1} ({ref}) came a text frame {payload[:60]!r} instead of its binary payload"
                        )
                    buffers[ref["id"]] = payload
                message = Message(header, json.loads(content_frame), buffers, time.perf_counter(), time.time())
                if self.on_message is not None:
                    self.on_message(message)
                else:
                    self._queue.put_nowait(message)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # connection closed or garbage: wake up whoever waits
            self.error = exc
            reason = str(exc) if isinstance(exc, BenchError) else repr(exc)
            closed = Message({"msgtype": "__closed__"}, {"error": reason}, {}, time.perf_counter())
            if self.on_message is not None:
                self.on_message(closed)
            self._queue.put_nowait(closed)

    async def next_message(self, timeout: float = 30.0) -> Message:
        message = await asyncio.wait_for(self._queue.get(), timeout)
        if message.msgtype == "__closed__":
            raise BenchError(f"connection closed: {message.content['error']}")
        return message

    async def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 30.0) -> Message:
        """Skip messages until one matches (ERROR replies raise)."""
        deadline = time.perf_counter() + timeout
        while True:
            message = await self.next_message(max(0.001, deadline - time.perf_counter()))
            if message.msgtype == "ERROR":
                raise BenchError(f"server replied ERROR: {message.content.get('text')}")
            if predicate(message):
                return message

    # -- sending ----------------------------------------------------------------------------

    async def send(self, msgtype: str, content: Any, buffers: list[tuple[str, bytes]] = (), msgid: str | None = None) -> str:
        """Send one message, its frames back to back. Returns the msgid."""
        msgid = msgid or new_msgid()
        header: dict[str, Any] = {"msgid": msgid, "msgtype": msgtype}
        if buffers:
            header["num_buffers"] = len(buffers)
        content_json = content if isinstance(content, str) else json.dumps(content, separators=(",", ":"))
        frames: list[str | bytes] = [json.dumps(header), "{}", content_json]
        for ref, payload in buffers:
            frames.append(json.dumps({"id": ref}))
            frames.append(payload)
        for frame in frames:
            await self.ws.send(frame)
        return msgid

    async def request(self, msgtype: str, content: Any, timeout: float = 30.0) -> Message:
        msgid = await self.send(msgtype, content)
        return await self.wait_for(lambda m: m.header.get("reqid") == msgid or m.msgtype == "ERROR", timeout)

    async def document_ready(self) -> str:
        """Send the ``document_ready`` event BokehJS sends once it has rendered the document.

        Panel holds back events and periodic callbacks of a session until this event says the
        page is connected (``pn.state.onload`` runs then): a client that never sends it
        measures Panel's waiting, not its work. Plain Bokeh apps ignore it.
        """
        event = {
            "kind": "MessageSent",
            "msg_type": "bokeh_event",
            "msg_data": {"type": "event", "name": "document_ready", "values": {"type": "map", "entries": []}},
        }
        return await self.send("PATCH-DOC", {"events": [event]})

    async def set_property(self, model_id: str, attr: str, new: Any) -> str:
        event = {"kind": "ModelChanged", "model": {"id": model_id}, "attr": attr, "new": new}
        return await self.send("PATCH-DOC", {"events": [event]})


def ndarray_column(ref: str, length: int) -> dict[str, Any]:
    """The serialized form of a float64 column whose bytes travel in buffer ``ref``."""
    return {
        "type": "ndarray",
        "array": {"type": "bytes", "data": {"id": ref}},
        "shape": [length],
        "dtype": "float64",
        "order": "little",
    }

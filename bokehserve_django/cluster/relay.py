"""Relays a WebSocket that landed on one process (the edge) to the process owning its session.

Edge side: the consumer forwards client frames with ``EdgeRelay`` and writes back what the
owner sends. Owner side: ``OwnerRelays`` attaches a ``ClientConnection`` to the session for
each relayed client and feeds it the client's frames, one client at a time, in order.
Channel-layer message types (``bokehserve.relay.*``) are defined here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from asgiref.sync import sync_to_async

from .membership import cluster
from ..conf import bokeh_settings
from ..connection import ClientConnection
from ..protocol import CloseCode

__all__ = ("EdgeRelay", "OwnerRelays", "owner_relays", "request_page", "send_page")

logger = logging.getLogger(__name__)

OPEN = "bokehserve.relay.open"          # edge -> owner: a client wants the session
FRAME = "bokehserve.relay.frame"        # edge -> owner: one client frame
CLOSED = "bokehserve.relay.closed"      # edge -> owner: the client went away
DISCARD = "bokehserve.relay.discard"    # edge -> owner: destroy the session (sign-out)
FRAMES = "bokehserve.relay.frames"      # owner -> edge: the frames of one message
CLOSE = "bokehserve.relay.close"        # owner -> edge: close the client with code and reason
RENDER_PAGE = "bokehserve.relay.render_page"  # edge -> owner: render the page of a session
PAGE = "bokehserve.relay.page"          # owner -> edge: the rendered page

#: Seconds an edge waits for the owner to render a page.
PAGE_TIMEOUT = 15

#: Seconds between the edge's checks that the owner process is alive.
OWNER_CHECK_INTERVAL = 1.0


#: Edge address ("<process channel>|<id>") -> the consumer it belongs to, in this process.
_edges: dict[str, Any] = {}
_pending_pages: dict[str, asyncio.Future] = {}


def _address(local_id: str) -> str:
    return f"{cluster.process_channel}|{local_id}"


def _process_of(address: str) -> str:
    return address.split("|", 1)[0]


class EdgeRelay:
    """The edge end of a relayed WebSocket (lives in the consumer)."""

    def __init__(self, owner: str, consumer: Any) -> None:
        import uuid

        self.owner = owner
        self.edge_channel = _address(uuid.uuid4().hex)
        self._close_client = consumer.close_connection
        _edges[self.edge_channel] = self
        self.consumer = consumer
        self._watchdog: asyncio.Task[None] | None = None
        # Frames are numbered both ways: a channel layer that re-delivers after a Redis
        # reconnect must not repeat a message, and a lost one must not go unnoticed.
        self._sent = 0
        self._received = 0

    async def open(self, app_name: str, session_id: str, token: str, payload: dict[str, Any], scope: dict[str, Any], user_pk: Any) -> None:
        await cluster.send(self.owner, {
            "type": OPEN,
            "edge": self.edge_channel,
            "app": app_name,
            "session_id": session_id,
            "token": token,
            "payload": payload,
            "scope": {
                "path": scope.get("path", ""),
                "query_string": scope.get("query_string", b""),
                "headers": [list(h) for h in scope.get("headers", [])],
                "client": list(scope.get("client") or ["", 0]),
                "scheme": scope.get("scheme", "ws"),
            },
            "user": None if user_pk is None else str(user_pk),
        })
        self._watchdog = asyncio.get_running_loop().create_task(self._watch_owner())

    async def forward(self, fragment: str | bytes) -> None:
        key = "bytes" if isinstance(fragment, bytes) else "text"
        self._sent += 1
        await cluster.send(self.owner, {"type": FRAME, "edge": self.edge_channel, "seq": self._sent, key: fragment})

    async def deliver(self, message: dict[str, Any]) -> None:
        """Owner -> client: the frames of one message, in order, once."""
        seq = message.get("seq", self._received + 1)
        if seq <= self._received:
            return  # re-delivered
        if seq != self._received + 1:
            await self._close_client(CloseCode.OWNER_LOST, "Messages from the process holding this session were lost; reload")
            return
        self._received = seq
        try:
            await self.consumer.send_frames(message["frames"])
        except Exception as exc:  # the client closed while the owner's answer was on its way
            logger.debug("Dropped relayed frames for a closed client: %s", exc)

    async def discard_session(self) -> None:
        await cluster.send(self.owner, {"type": DISCARD, "edge": self.edge_channel})

    async def closed(self) -> None:
        _edges.pop(self.edge_channel, None)
        if self._watchdog is not None:
            self._watchdog.cancel()
        with contextlib.suppress(Exception):
            await cluster.send(self.owner, {"type": CLOSED, "edge": self.edge_channel})

    async def _watch_owner(self) -> None:
        while True:
            await asyncio.sleep(OWNER_CHECK_INTERVAL)
            if not await cluster.is_alive(self.owner):
                logger.warning("Owner process of a relayed session is gone; closing the client")
                await self._close_client(CloseCode.OWNER_LOST, "The process holding this session went away; reload")
                return


class _RelayTransport:
    """Owner side: sends a relayed client's messages back to its edge."""

    def __init__(self, edge: str) -> None:
        self.edge = edge
        self._sent = 0

    async def send_frames(self, frames: Iterable[str | bytes]) -> None:
        self._sent += 1
        await cluster.send(
            _process_of(self.edge), {"type": FRAMES, "edge": self.edge, "seq": self._sent, "frames": list(frames)}
        )

    async def close_connection(self, code: int, reason: str) -> None:
        await cluster.send(_process_of(self.edge), {"type": CLOSE, "edge": self.edge, "code": int(code), "reason": reason})


class _OwnedClient:
    """Owner side of one relayed client: its frames, fed to its connection in order."""

    def __init__(self, app_name: str) -> None:
        self.app_name = app_name
        self.client: ClientConnection | None = None
        self.queue: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None
        self.received = 0  # the number of the last client frame taken

    def start(self, attach: Any) -> None:
        self.worker = asyncio.get_running_loop().create_task(self._work(attach))

    async def _work(self, attach: Any) -> None:
        try:
            if not await attach:
                return
            while True:
                fragment = await self.queue.get()
                if fragment is None:  # the client went away
                    return
                assert self.client is not None
                await self.client.feed(fragment)
        finally:
            if self.client is not None:
                self.client.detach()


class OwnerRelays:
    """Owner side: the relayed clients of this process's sessions, by edge channel."""

    def __init__(self) -> None:
        self._clients: dict[str, _OwnedClient] = {}

    def install(self) -> None:
        cluster.on(OPEN, self._open)
        cluster.on(FRAME, self._frame)
        cluster.on(CLOSED, self._closed)
        cluster.on(DISCARD, self._discard)
        cluster.on(FRAMES, self._edge_frames)
        cluster.on(CLOSE, self._edge_close)
        cluster.on(PAGE, self._page)

    async def _edge_frames(self, message: dict[str, Any]) -> None:
        edge = _edges.get(message["edge"])
        if edge is not None:
            await edge.deliver(message)

    async def _edge_close(self, message: dict[str, Any]) -> None:
        edge = _edges.get(message["edge"])
        if edge is not None:
            await edge.consumer.close_connection(message["code"], message["reason"])

    async def _page(self, message: dict[str, Any]) -> None:
        future = _pending_pages.get(message["reply"])
        if future is not None and not future.done():
            future.set_result(message)

    async def _open(self, message: dict[str, Any]) -> None:
        # Frames may arrive while the session is being created (app code can take a
        # while): queue them now, and create the session in a task, so relay traffic of
        # other sessions keeps flowing through this process meanwhile.
        if message["edge"] in self._clients:
            return  # re-delivered by the channel layer after a reconnect
        owned = _OwnedClient(message["app"])
        self._clients[message["edge"]] = owned
        owned.start(self._attach(message, owned))

    async def _attach(self, message: dict[str, Any], owned: _OwnedClient) -> bool:
        from ..auth import user_for_websocket
        from ..exceptions import AppLoadError, SessionRefused
        from ..requests import from_websocket_scope
        from ..sessions import runtime

        edge, app_name = message["edge"], message["app"]
        transport = _RelayTransport(edge)
        scope = dict(message["scope"])
        scope["headers"] = [tuple(h) for h in scope["headers"]]
        user = None
        if message.get("user") is not None:
            user = await sync_to_async(_load_user)(message["user"])
        user = await user_for_websocket(user, {})
        request = from_websocket_scope(scope, message["payload"], user)
        try:
            session = await runtime.app(app_name).get_or_create(
                message["session_id"], request, message["token"], message["payload"]
            )
        except (AppLoadError, SessionRefused) as exc:
            self._clients.pop(edge, None)
            await transport.close_connection(CloseCode.SESSION_DESTROYED, f"Session unavailable: {exc}")
            return False
        owned.client = ClientConnection(
            session, transport,
            max_buffers=bokeh_settings.MAX_BUFFERS_PER_MESSAGE,
            max_message_bytes=bokeh_settings.WEBSOCKET_MAX_MESSAGE_SIZE,
        )
        logger.info("Relayed WebSocket attached to session %r of app %r", session.id, app_name)
        await owned.client.open()
        return True

    async def _frame(self, message: dict[str, Any]) -> None:
        owned = self._clients.get(message["edge"])
        if owned is None:
            return
        seq = message.get("seq", owned.received + 1)
        if seq <= owned.received:
            return  # re-delivered by the channel layer
        if seq != owned.received + 1:
            # A frame went missing: the message stream is out of step; close, don't guess.
            logger.warning("Relayed client lost frames (%d after %d); closing it", seq, owned.received)
            self._clients.pop(message["edge"], None)
            await owned.queue.put(None)
            await _RelayTransport(message["edge"]).close_connection(
                CloseCode.OWNER_LOST, "Frames were lost on the way to this session; reload"
            )
            return
        owned.received = seq
        fragment = message.get("text")
        await owned.queue.put(fragment if fragment is not None else message.get("bytes"))

    async def _closed(self, message: dict[str, Any]) -> None:
        owned = self._clients.pop(message["edge"], None)
        if owned is None:
            return
        await owned.queue.put(None)  # the worker detaches after the frames before it

    async def _discard(self, message: dict[str, Any]) -> None:
        from ..sessions import runtime

        owned = self._clients.get(message["edge"])
        session = owned.client.session if owned is not None and owned.client is not None else None
        if session is not None:
            await runtime.app(owned.app_name).discard(session, reason="Signed out", close_code=CloseCode.ACCESS_REVOKED)

    @property
    def count(self) -> int:
        return len(self._clients)


async def request_page(owner: str, app_name: str, session_id: str, token: str) -> tuple[int, str]:
    """Ask the owner process to render the page of its session; (status, html)."""
    import uuid

    reply = _address(uuid.uuid4().hex)
    future = asyncio.get_running_loop().create_future()
    _pending_pages[reply] = future
    try:
        await cluster.send(owner, {"type": RENDER_PAGE, "reply": reply, "app": app_name, "session_id": session_id, "token": token})
        message = await asyncio.wait_for(future, PAGE_TIMEOUT)
    except TimeoutError:
        return 504, "The process holding this session did not answer; reload the page.\n"
    finally:
        _pending_pages.pop(reply, None)
    return int(message["status"]), message["html"]


async def send_page(message: dict[str, Any], status: int, html: str) -> None:
    """Owner side: answer a RENDER_PAGE request."""
    await cluster.send(_process_of(message["reply"]), {"type": PAGE, "reply": message["reply"], "status": status, "html": html})


def _load_user(user_pk: str) -> Any:
    from django.contrib.auth import get_user_model

    model = get_user_model()
    return model._default_manager.filter(pk=model._meta.pk.to_python(user_pk), is_active=True).first()


owner_relays = OwnerRelays()

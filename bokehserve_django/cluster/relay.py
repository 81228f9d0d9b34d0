"""Relays a WebSocket that landed on one process (the edge) to the process owning its session.

Edge side: the consumer forwards client messages with ``EdgeRelay`` (one channel-layer
message per Bokeh message) and writes back what the owner sends. Owner side:
``OwnerRelays`` attaches a ``ClientConnection`` to the session for each relayed client and
feeds it the client's messages, in order.

Each end knows when the other is gone. One watch task per process checks, once a second
and in one Redis round trip, that the processes at the other end of its relays still beat:
an edge closes its client with 4005 when the owner died; an owner drops the relayed
clients of a dead edge (the session is then reaped by the usual unused-session rules).
When Redis goes down or restarts, frames may have been lost in it, so both ends end their
relays at once: edges close their clients with 4006 and a reason, and BokehJS reconnects
to the same, still living, session. A relay never stays open and silent.

Channel-layer message types (``bokehserve.relay.*``) are defined here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .. import metrics
from ..conf import bokeh_settings
from ..connection import ClientConnection
from ..exceptions import AppLoadError, SessionRefused, SessionsUnavailable
from ..protocol import CloseCode, MessageSplitter
from .membership import membership
from .placement import Where, is_page_token, locate

__all__ = ("EdgeRelay", "OwnerRelays", "owner_relays", "request_page")

logger = logging.getLogger(__name__)

OPEN = "bokehserve.relay.open"          # edge -> owner: a client wants the session
MESSAGE = "bokehserve.relay.message"    # edge -> owner: the frames of one client message
CLOSED = "bokehserve.relay.closed"      # edge -> owner: the client went away
DISCARD = "bokehserve.relay.discard"    # edge -> owner: destroy the session (sign-out)
FRAMES = "bokehserve.relay.frames"      # owner -> edge: the frames of one message
CLOSE = "bokehserve.relay.close"        # owner -> edge: close the client with code and reason
RENDER_PAGE = "bokehserve.relay.render_page"  # edge -> owner: render the page of a session
PAGE = "bokehserve.relay.page"          # owner -> edge: the rendered page

#: Seconds an edge waits for the owner to render a page.
PAGE_TIMEOUT = 15
#: Seconds between two checks that the processes at the other ends of relays are alive.
WATCH_INTERVAL = 1.0
#: Client messages a relayed client may have waiting at its owner, and messages for it
#: waiting to be sent back. A client further behind than that is closed (with a reason)
#: rather than letting one client's backlog grow without bound.
OWNER_QUEUE_LIMIT = 256
OUTBOX_LIMIT = 256
#: Seconds between attempts to tell an edge that its relay broke, after a failed send.
CLOSE_RETRY_DELAYS = (0, 0.5, 1, 2, 4)

#: Reasons clients read in the close frame.
OWNER_GONE = "The process holding this session went away"
LINK_BROKEN = "The link to the process holding this session was interrupted (Redis); reconnecting"

#: Edge address ("<process channel>|<id>") -> its EdgeRelay, in this process.
_edges: dict[str, EdgeRelay] = {}
#: Reply address -> (owner channel, future) of the page requests this process is waiting for.
_pending_pages: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}


def _address(local_id: str) -> str:
    return f"{membership.process_channel}|{local_id}"


def _process_of(address: str) -> str:
    return address.split("|", 1)[0]


class EdgeRelay:
    """The edge end of a relayed WebSocket (lives in the consumer)."""

    def __init__(self, owner: str, consumer: Any) -> None:
        self.owner = owner
        self.consumer = consumer
        self.edge_channel = _address(uuid.uuid4().hex)
        self._splitter = MessageSplitter(
            max_buffers=bokeh_settings.MAX_BUFFERS_PER_MESSAGE,
            max_message_bytes=bokeh_settings.WEBSOCKET_MAX_MESSAGE_SIZE,
        )
        # Messages are numbered both ways: a channel layer that re-delivers after a Redis
        # reconnect must not repeat a message, and a lost one must not go unnoticed.
        self._sent = 0
        self._received = 0
        self.ended = False
        _edges[self.edge_channel] = self

    async def open(self, app_name: str, session_id: str, token: str, payload: dict[str, Any], scope: dict[str, Any], user_pk: Any) -> None:
        metrics.relay_open_sent(self)
        await membership.send(self.owner, {
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

    async def forward(self, fragment: str | bytes) -> None:
        """Client -> owner; raises if the channel layer cannot take it (the caller closes)."""
        frames = self._splitter.push(fragment)
        if frames is None:
            return
        self._sent += 1
        await membership.send(self.owner, {"type": MESSAGE, "edge": self.edge_channel, "seq": self._sent, "frames": frames})

    async def deliver(self, message: dict[str, Any]) -> None:
        """Owner -> client: the frames of one message, in order, once."""
        seq = message.get("seq", self._received + 1)
        if seq <= self._received:
            return  # re-delivered
        if seq != self._received + 1:
            await self.end(CloseCode.RELAY_INTERRUPTED, "Messages from the process holding this session were lost; reconnecting")
            return
        self._received = seq
        metrics.relay_answer_arrived(self)
        try:
            await self.consumer.send_frames(message["frames"])
        except Exception as exc:  # the client closed while the owner's answer was on its way
            logger.debug("Dropped relayed frames for a closed client: %s", exc)

    async def end(self, code: int, reason: str) -> None:
        """Close the client with a reason; the owner side is told if it can still hear."""
        if self.ended:
            return
        self.ended = True
        _edges.pop(self.edge_channel, None)
        with contextlib.suppress(Exception):
            await self.consumer.close_connection(code, reason)
        await self._tell_owner_closed()

    async def discard_session(self, reason: str) -> None:
        """Ask the owner to destroy the session (access revoked); its clients get 4008 and ``reason``."""
        await membership.send(self.owner, {"type": DISCARD, "edge": self.edge_channel, "reason": reason})

    async def closed(self) -> None:
        """The client went away."""
        if self.ended:
            return
        self.ended = True
        _edges.pop(self.edge_channel, None)
        await self._tell_owner_closed()

    async def _tell_owner_closed(self) -> None:
        if membership.known_down:
            return  # the owner drops its end when it hears of the outage
        with contextlib.suppress(Exception):
            await asyncio.wait_for(membership.send(self.owner, {"type": CLOSED, "edge": self.edge_channel}), 2)


def edge_count() -> int:
    """Clients connected to this process whose sessions live in another (the edge ends here)."""
    return len(_edges)


class _RelayTransport:
    """Owner side: sends a relayed client's messages back to its edge, in order.

    bokeh's ServerSession awaits its connections' sends while it holds the document lock.
    Sending here only queues (a bounded outbox, drained by one task per client), so a slow
    or unreachable Redis never holds a session's document lock.
    """

    def __init__(self, owned: _OwnedClient) -> None:
        self._owned = owned
        self._sent = 0
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._ended = False

    async def send_frames(self, frames: Iterable[str | bytes]) -> None:
        if self._ended:
            return
        if self._outbox.qsize() >= OUTBOX_LIMIT:
            logger.warning("Relayed client of app %r is %d messages behind; closing it", self._owned.app_name, OUTBOX_LIMIT)
            await self.close_connection(CloseCode.RELAY_INTERRUPTED, "This connection fell too far behind; reconnecting")
            return
        self._sent += 1
        self._post({"type": FRAMES, "edge": self._owned.edge, "seq": self._sent, "frames": list(frames)})

    async def close_connection(self, code: int, reason: str) -> None:
        """Close the client after the messages queued before (the edge closes it with this code)."""
        if self._ended:
            return
        self._post({"type": CLOSE, "edge": self._owned.edge, "code": int(code), "reason": reason})
        self._owned.stop()

    def finish(self) -> None:
        """Send what is queued, then nothing more (the sender task ends)."""
        if not self._ended:
            self._ended = True
            self._outbox.put_nowait(None)

    def _post(self, message: dict[str, Any]) -> None:
        self._outbox.put_nowait(message)
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send_in_order())

    async def _send_in_order(self) -> None:
        while (message := await self._outbox.get()) is not None:
            try:
                await membership.send(self._owned.process, message)
            except Exception as exc:
                # A message the client will never see puts its document out of step: end the
                # relay, and make sure the edge hears of it, or its client would stay open
                # and silent (a failed send is often one stale connection, Redis being up).
                logger.warning("Could not relay a message to its client (%s); ending that relay", exc)
                self._ended = True
                self._owned.stop()
                await self._tell_edge_to_close()
                return

    async def _tell_edge_to_close(self) -> None:
        message = {"type": CLOSE, "edge": self._owned.edge, "code": int(CloseCode.RELAY_INTERRUPTED),
                   "reason": "Messages to this connection were lost; reconnecting"}
        for delay in CLOSE_RETRY_DELAYS:
            await asyncio.sleep(delay)
            try:
                await membership.send(self._owned.process, message)
                return
            except Exception:
                continue
        # Still failing: Redis is down, and the edge ends its relays when it notices that.


class _OwnedClient:
    """Owner side of one relayed client: its messages, fed to its connection in order."""

    def __init__(self, edge: str, app_name: str, on_done: Callable[[str], None]) -> None:
        self.edge = edge
        self.process = _process_of(edge)
        self.app_name = app_name
        self.client: ClientConnection | None = None
        self.transport = _RelayTransport(self)
        self._queue: asyncio.Queue[list[str | bytes] | None] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._on_done = on_done
        self.received = 0  # the number of the last client message taken

    def start(self, attach: Callable[[_OwnedClient], Awaitable[bool]]) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._work(attach))

    def offer(self, frames: list[str | bytes]) -> bool:
        """Queue a client message; False when the client is too far behind its session."""
        if self._queue.qsize() >= OWNER_QUEUE_LIMIT:
            return False
        self._queue.put_nowait(frames)
        return True

    def stop(self) -> None:
        """End after the messages queued so far (the client went away, or the relay broke)."""
        self._on_done(self.edge)
        self._queue.put_nowait(None)
        self.transport.finish()

    async def _work(self, attach: Callable[[_OwnedClient], Awaitable[bool]]) -> None:
        try:
            if not await attach(self):
                return
            while True:
                frames = await self._queue.get()
                if frames is None:
                    return
                assert self.client is not None
                for fragment in frames:
                    await self.client.feed(fragment)
        finally:
            self._on_done(self.edge)
            if self.client is not None:
                self.client.detach()


class OwnerRelays:
    """Both sides of this process's relays: clients it owns for edges, and the watch task."""

    def __init__(self) -> None:
        self._clients: dict[str, _OwnedClient] = {}
        self._watch: asyncio.Task[None] | None = None
        #: (user pk | None) -> the user of a relayed client; set by the composition root.
        self.load_user: Callable[[str | None, dict[str, Any]], Awaitable[Any]] | None = None
        #: (session, token) -> page HTML; set by the composition root.
        self.render_page: Callable[[Any, str], str] | None = None

    def install(self) -> None:
        membership.on(OPEN, self._open)
        membership.on(MESSAGE, self._message)
        membership.on(CLOSED, self._closed)
        membership.on(DISCARD, self._discard)
        membership.on(FRAMES, self._edge_frames)
        membership.on(CLOSE, self._edge_close)
        membership.on(RENDER_PAGE, self._render_page)
        membership.on(PAGE, self._page)
        membership.on_event(self._on_cluster_event)
        if self._watch is None or self._watch.done():
            self._watch = asyncio.get_running_loop().create_task(self._watch_forever())

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch
            self._watch = None
        for owned in list(self._clients.values()):
            owned.stop()

    @property
    def count(self) -> int:
        return len(self._clients)

    def relayed_per_session(self) -> Counter[tuple[str, str]]:
        """(app name, session id) -> clients relayed to it from other processes, attached now."""
        return Counter(
            (owned.app_name, owned.client.session.id)
            for owned in self._clients.values()
            if owned.client is not None and owned.client.session is not None
        )

    async def end_edges(self, code: int, reason: str) -> int:
        """Close every client this process relays to another owner; how many."""
        edges = list(_edges.values())
        for edge in edges:
            await edge.end(code, reason)
        return len(edges)

    # -- edge side ---------------------------------------------------------------

    async def _edge_frames(self, message: dict[str, Any]) -> None:
        edge = _edges.get(message["edge"])
        if edge is not None:
            await edge.deliver(message)

    async def _edge_close(self, message: dict[str, Any]) -> None:
        edge = _edges.get(message["edge"])
        if edge is not None:
            edge.ended = True  # the owner already forgot this client
            _edges.pop(edge.edge_channel, None)
            await edge.consumer.close_connection(message["code"], message["reason"])

    async def _page(self, message: dict[str, Any]) -> None:
        owner, future = _pending_pages.get(message["reply"], (None, None))
        if future is not None and not future.done():
            future.set_result(message)

    # -- owner side --------------------------------------------------------------

    def _forget(self, edge: str) -> None:
        self._clients.pop(edge, None)

    async def _open(self, message: dict[str, Any]) -> None:
        # Messages may arrive while the session is being created (app code can take a
        # while): queue them now, and attach in a task, so relay traffic of other sessions
        # keeps flowing through this process meanwhile.
        if message["edge"] in self._clients:
            return  # re-delivered by the channel layer after a reconnect
        owned = _OwnedClient(message["edge"], message["app"], self._forget)
        self._clients[owned.edge] = owned
        owned.start(lambda owned: self._attach(message, owned))

    async def _attach(self, message: dict[str, Any], owned: _OwnedClient) -> bool:
        """Give the relayed client its session; any failure closes it with a code and reason."""
        from ..requests import from_websocket_scope
        from ..sessions import runtime

        app_name, session_id, payload = message["app"], message["session_id"], message["payload"]
        try:
            scope = dict(message["scope"])
            scope["headers"] = [tuple(h) for h in scope["headers"]]
            user = await self.load_user(message.get("user"), payload) if self.load_user is not None else None
            request = from_websocket_scope(scope, payload, user)
            placement = await locate(app_name, session_id, must_exist=is_page_token(payload))
            if placement.where is Where.GONE:
                await owned.transport.close_connection(CloseCode.SESSION_GONE, "This session no longer exists; reload the page")
                return False
            if placement.where is Where.RELAYED:
                # The edge's view of the owner was stale (a takeover): let it reconnect and look again.
                await owned.transport.close_connection(CloseCode.RELAY_INTERRUPTED, "This session moved; reconnecting")
                return False
            session = await runtime.app(app_name).get_or_create(session_id, request, message["token"], payload)
        except (AppLoadError, SessionRefused) as exc:
            await owned.transport.close_connection(CloseCode.SESSION_DESTROYED, f"Session unavailable: {exc}")
            return False
        except SessionsUnavailable as exc:
            code = CloseCode.GOING_AWAY if exc.retry_after <= 1 else CloseCode.CLUSTER_UNAVAILABLE
            await owned.transport.close_connection(code, exc.reason)
            return False
        except Exception:
            logger.error("Could not attach a relayed client to session %r of app %r", session_id, app_name, exc_info=True)
            await owned.transport.close_connection(CloseCode.INTERNAL_ERROR, "Internal server error")
            return False
        owned.client = ClientConnection(
            session, owned.transport,
            max_buffers=bokeh_settings.MAX_BUFFERS_PER_MESSAGE,
            max_message_bytes=bokeh_settings.WEBSOCKET_MAX_MESSAGE_SIZE,
        )
        logger.info("Relayed WebSocket attached to session %r of app %r", session.id, app_name)
        await owned.client.open()
        return True

    async def _message(self, message: dict[str, Any]) -> None:
        owned = self._clients.get(message["edge"])
        if owned is None:
            return
        seq = message.get("seq", owned.received + 1)
        if seq <= owned.received:
            return  # re-delivered by the channel layer
        if seq != owned.received + 1:
            # A message went missing: the client's document is out of step; close, don't guess.
            logger.warning("Relayed client lost messages (%d after %d); closing it", seq, owned.received)
            await owned.transport.close_connection(CloseCode.RELAY_INTERRUPTED, "Messages to this session were lost; reconnecting")
            return
        owned.received = seq
        if not owned.offer(message["frames"]):
            logger.warning("Relayed client of app %r is %d messages behind; closing it", owned.app_name, OWNER_QUEUE_LIMIT)
            await owned.transport.close_connection(CloseCode.MESSAGE_TOO_BIG, "Too many messages waiting for this session")

    async def _closed(self, message: dict[str, Any]) -> None:
        owned = self._clients.get(message["edge"])
        if owned is not None:
            owned.stop()  # the worker detaches after the messages before it

    async def _discard(self, message: dict[str, Any]) -> None:
        from ..sessions import runtime

        owned = self._clients.get(message["edge"])
        session = owned.client.session if owned is not None and owned.client is not None else None
        if session is not None:
            # "reason" is absent in messages from processes of an earlier version.
            reason = str(message.get("reason", "Signed out"))
            await runtime.app(owned.app_name).discard(session, reason=reason, close_code=CloseCode.ACCESS_REVOKED)

    async def _render_page(self, message: dict[str, Any]) -> None:
        # Rendering may wait for app code: do it aside, not in the process's message loop.
        asyncio.get_running_loop().create_task(self._answer_page(message))

    async def _answer_page(self, message: dict[str, Any]) -> None:
        from ..exceptions import SessionNotFound
        from ..sessions import runtime

        status, html = 200, ""
        try:
            # The claim is won before the app code has run: wait for a creation in progress.
            session = await runtime.app(message["app"]).get_when_created(message["session_id"])
            html = self.render_page(session, message["token"])
        except SessionNotFound:
            status, html = 404, "This session no longer exists; reload the page.\n"
        except SessionsUnavailable as exc:
            status, html = 503, f"{exc.reason}\n"
        except Exception:
            logger.error("Could not render the page of session %r for another process", message["session_id"], exc_info=True)
            status, html = 500, "The server failed to render this page.\n"
        with contextlib.suppress(Exception):
            await membership.send(_process_of(message["reply"]), {"type": PAGE, "reply": message["reply"], "status": status, "html": html})

    # -- both sides: liveness of the other end ------------------------------------

    async def _watch_forever(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                await self.check_other_ends()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.error("Error while checking the other ends of relays", exc_info=True)

    async def check_other_ends(self) -> None:
        """End the relays whose other process stopped beating: one Redis round trip."""
        channels = {edge.owner for edge in _edges.values()} | {owned.process for owned in self._clients.values()}
        channels |= {owner for owner, _ in _pending_pages.values()}
        if not channels:
            return
        alive = await membership.alive_map(channels)
        for owner, future in list(_pending_pages.values()):
            if not alive.get(owner, True) and not future.done():
                # Asked again, this process takes the dead owner's record over.
                future.set_result({"status": 503, "html": f"{OWNER_GONE}; reload the page.\n"})
        for edge in list(_edges.values()):
            if not alive.get(edge.owner, True):
                logger.warning("The owner process of a relayed session is gone; closing its client")
                await edge.end(CloseCode.OWNER_LOST, f"{OWNER_GONE}; reconnecting")
        for owned in list(self._clients.values()):
            if not alive.get(owned.process, True):
                logger.info("The process relaying a client of app %r is gone; dropping that client", owned.app_name)
                owned.stop()

    async def _on_cluster_event(self, event: str, data: dict[str, Any]) -> None:
        if event not in ("down", "restarted"):
            return
        # Frames may have been lost in Redis: end every relay with a reason. The sessions
        # live on, and BokehJS reconnects to them.
        edges, owned = list(_edges.values()), list(self._clients.values())
        if edges or owned:
            logger.warning("Redis %s: ending %d relayed client(s) here and %d relayed to here",
                           "restarted" if event == "restarted" else "is unreachable", len(edges), len(owned))
        for edge in edges:
            await edge.end(CloseCode.RELAY_INTERRUPTED, LINK_BROKEN)
        for client in owned:
            client.stop()


async def request_page(owner: str, app_name: str, session_id: str, token: str) -> tuple[int, str]:
    """Ask the owner process to render the page of its session; (status, html)."""
    reply = _address(uuid.uuid4().hex)
    future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    _pending_pages[reply] = (owner, future)
    try:
        await membership.send(owner, {"type": RENDER_PAGE, "reply": reply, "app": app_name, "session_id": session_id, "token": token})
        message = await asyncio.wait_for(future, PAGE_TIMEOUT)
    except TimeoutError:
        return 504, "The process holding this session did not answer; reload the page.\n"
    except Exception as exc:  # the channel layer (Redis) is unreachable
        logger.warning("Could not ask the owner of session %r for its page: %s", session_id, exc)
        return 503, "The process holding this session cannot be reached right now; reload the page.\n"
    finally:
        _pending_pages.pop(reply, None)
    return int(message["status"]), message["html"]


owner_relays = OwnerRelays()

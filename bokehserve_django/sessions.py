"""Creates, finds and destroys Bokeh sessions, runs lifecycle hooks, and reaps unused sessions.

Builds on bokeh's ``ServerSession`` for the document lock, callbacks and patch dispatch, and
owns everything around it. Knows no Django request and no channel layer: callers hand in a
``SessionRequest`` and a ``Transport``. Everything here runs on the server's event loop;
app code and sync hooks run in the app-code pool (hooks.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import logging
import os
import sys
import time
import traceback
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol as TypingProtocol

import bokeh.document.document as bokeh_document_module
from bokeh.application.application import ServerContext, SessionContext
from bokeh.document import Document
from bokeh.protocol import Protocol
from bokeh.server.session import ServerSession
from tornado.ioloop import IOLoop

from . import hooks, metrics
from .exceptions import AppLoadError, AppTimedOut, NotAccepting, ProcessFull, SessionNotFound, SessionRefused
from .protocol import CloseCode, error_message
from .threads import AppCodeTimeout, RunFailure, late_result, run_failure, start_run

if TYPE_CHECKING:
    from concurrent.futures import Future

    from bokeh.application import Application
    from bokeh.document.events import DocumentPatchedEvent
    from bokeh.protocol.message import Message

__all__ = (
    "AppSessions",
    "SessionConnection",
    "SessionRequest",
    "Transport",
    "runtime",
)

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# What callers hand in
# ---------------------------------------------------------------------------


@dataclass
class SessionRequest:
    """The request a session was created from, as app code sees it in ``session_context.request``.

    ``arguments`` maps names to lists of bytes (as Tornado's ``request.arguments``);
    ``cookies`` and ``headers`` hold only what the header/cookie filters let through.
    """

    arguments: dict[str, list[bytes]] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    path: str = ""
    query: str = ""
    host: str = ""
    protocol: str = "http"
    remote_ip: str | None = None
    method: str = "GET"
    #: The Django user of the request (``AnonymousUser`` when signed out), when known.
    user: Any = None

    @property
    def uri(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


class Transport(TypingProtocol):
    """What a session connection needs from the WebSocket carrying it."""

    async def send_frames(self, frames: Iterable[str | bytes]) -> None:
        """Send the frames of one message back to back."""

    async def close_connection(self, code: int, reason: str) -> None:
        """Close the WebSocket with ``code`` and ``reason``."""


# ---------------------------------------------------------------------------
# bokeh's server/session context interfaces
# ---------------------------------------------------------------------------


class AppServerContext(ServerContext):
    """``session_context.server_context`` and the argument of on_server_loaded/unloaded."""

    def __init__(self, app_sessions: AppSessions) -> None:
        self._app_sessions = weakref.ref(app_sessions)

    @property
    def sessions(self) -> list[SessionContext]:
        app_sessions = self._app_sessions()
        return [] if app_sessions is None else [s.context for s in app_sessions.sessions]

    @property
    def application_context(self) -> AppSessions | None:
        return self._app_sessions()


class BokehSessionContext(SessionContext):
    """``curdoc().session_context``: id, request, token payload, server context, the document lock."""

    def __init__(
        self,
        session_id: str,
        server_context: AppServerContext,
        document: Document,
        request: SessionRequest | None,
        token_payload: dict[str, Any],
        logout_url: str | None = None,
    ) -> None:
        super().__init__(server_context, session_id)
        self._document = document
        self._request = request
        self._token_payload = token_payload
        self._logout_url = logout_url
        self._session: BokehSession | None = None

    @property
    def destroyed(self) -> bool:
        return self._session is not None and self._session.destroyed

    @property
    def request(self) -> SessionRequest | None:
        return self._request

    @property
    def token_payload(self) -> dict[str, Any]:
        return dict(self._token_payload)

    @property
    def user(self) -> Any:
        """The Django user the session was opened for (None if unknown)."""
        return self._request.user if self._request is not None else None

    @property
    def logout_url(self) -> str | None:
        return self._logout_url

    @property
    def session(self) -> BokehSession | None:
        return self._session

    async def with_locked_document(self, func: Callable[[Document], Awaitable[None]]) -> None:
        if self._session is None:
            await func(self._document)
        else:
            await self._session.with_document_locked(func, self._document)


# ---------------------------------------------------------------------------
# Sessions and their connections
# ---------------------------------------------------------------------------


class BokehSession(ServerSession):
    """bokeh's ServerSession plus its context and the token it was created with."""

    def __init__(self, session_id: str, document: Document, context: BokehSessionContext, token: str) -> None:
        super().__init__(session_id, document, io_loop=IOLoop.current(), token=token)
        self.context = context
        self.created_at = time.monotonic()
        #: When a client last changed the document (PATCH-DOC/PUSH-DOC): the admin's "idle".
        self.last_client_change = self.created_at
        self._app_modules: list[Any] = []

    @property
    def connections(self) -> list[SessionConnection]:
        return list(self._subscribed_connections)

    async def _handle_patch(self, message: Any, connection: Any) -> Any:
        self.last_client_change = time.monotonic()
        return await super()._handle_patch(message, connection)

    async def _handle_push(self, message: Any, connection: Any) -> Any:
        self.last_client_change = time.monotonic()
        return await super()._handle_push(message, connection)

    def destroy(self) -> None:
        """Destroy the document without bokeh's per-document ``gc.collect()`` and referrer scan.

        Both cost ~100 ms or more with a few dozen live documents and block the loop; the
        runtime collects garbage once per sweep instead (see SessionRuntime.collect_garbage).
        The app's modules are kept for the session-destroyed hooks that run next (bokeh
        clears them here, so hooks using module globals fail there, bokeh/bokeh#14538);
        clear_modules() clears them after the hooks.
        """
        modules = self.document.modules
        if hasattr(modules, "_modules"):
            self._app_modules, modules._modules = list(modules._modules), []
        with _gc_collect_deferred():
            super().destroy()

    def clear_modules(self) -> None:
        """Clear the modules the app code ran in (once the session-destroyed hooks have run)."""
        app_modules, self._app_modules = self._app_modules, []
        for module in app_modules:
            sys.modules.pop(module.__name__, None)
            module.__dict__.clear()


@contextlib.contextmanager
def _gc_collect_deferred():
    """Make bokeh's Document.destroy skip its gc.collect() for the duration (loop thread only)."""

    class _NoCollect:
        def __getattr__(self, name: str) -> Any:
            return getattr(gc, name)

        @staticmethod
        def collect(*args: Any, **kwargs: Any) -> int:
            runtime.collect_garbage_soon()
            return 0

    original = bokeh_document_module.gc
    bokeh_document_module.gc = _NoCollect()  # type: ignore[assignment]
    try:
        yield
    finally:
        bokeh_document_module.gc = original


class SessionConnection:
    """One WebSocket attached to a session; what bokeh's ServerSession calls a connection."""

    def __init__(self, session: BokehSession, transport: Transport) -> None:
        self._protocol = Protocol()
        self._transport = transport
        self._session: BokehSession | None = session
        self._send_lock = asyncio.Lock()
        session.subscribe(self)

    @property
    def protocol(self) -> Protocol:
        return self._protocol

    @property
    def _socket(self) -> SessionConnection:
        """Where bokeh's ServerConnection keeps its WebSocket: Panel writes messages through it.

        Panel dispatches on the type of ``connection._socket``; bokehserve_django.panel.builder
        registers how to write to this one (its send_message).
        """
        return self

    @property
    def session(self) -> BokehSession:
        assert self._session is not None
        return self._session

    @property
    def attached(self) -> bool:
        return self._session is not None

    def ok(self, message: Message[Any]) -> Message[Any]:
        return self._protocol.create("OK", message.header["msgid"])

    def error(self, message: Message[Any], text: str) -> Message[Any]:
        return error_message(self._protocol, message.header["msgid"], text)

    def send_patch_document(self, event: DocumentPatchedEvent) -> Awaitable[None]:
        """Called by ServerSession under the document lock; the returned awaitable runs after it."""
        return self.send_message(self._protocol.create("PATCH-DOC", [event]))

    async def send_message(self, message: Message[Any]) -> None:
        # The lock keeps one message's frames together when several tasks send at once.
        async with self._send_lock:
            try:
                await self._transport.send_frames(_frames_of(message))
                metrics.message_sent(message)
            except Exception as exc:
                # The client is gone; its disconnect will clean up. Common, not a fault: a
                # client that closes right after its last message (a closed tab, bokeh.client's
                # close()) has its close frame handled by autobahn before our reply to that
                # message goes out (~1 per session in bench/procs.py's opens).
                logger.debug("Not sent: the connection is already closed (%r)", exc)

    async def close(self, code: int, reason: str) -> None:
        await self._transport.close_connection(code, reason)

    def detach(self) -> None:
        """Stop receiving changes and let the session expire once unused."""
        session, self._session = self._session, None
        if session is not None:
            session.unsubscribe(self)
            if not session.destroyed:
                session.notify_connection_lost()


def _run_app_code(application: Application, document: Document) -> RunFailure | None:
    """Build ``document`` with the app's handlers (in a pool thread); how this run failed, if it did.

    The failure is this run's own (threads.run_failure), not the handler's shared flag,
    which another session's run may have set or reset meanwhile.
    """
    start_run()
    application.initialize_document(document)
    return run_failure()


def _destroy_unserved_document(document: Document) -> None:
    """Free a document that never became a session's (its app code ran past the time limit)."""
    with _gc_collect_deferred():
        document.callbacks.destroy()
        document.models.destroy()
        document.modules.destroy()


def _has_process_request(application: Application) -> bool:
    """Whether the app, or any of its handlers, has a ``process_request`` of its own.

    bokeh's ``Handler.process_request`` returns ``{}``; an app made only of handlers that keep
    it (a script, a notebook, a function) adds nothing to a session's token, so the page
    need not wait for a pool thread to learn that. Checked per request: handlers can be
    added to an Application at any time.
    """
    from bokeh.application import Application as BokehApplication
    from bokeh.application.handlers.handler import Handler

    def own(holder: Any, inherited: Callable[..., Any]) -> bool:
        # A bound method of the inherited function, or anything else (a subclass's
        # override, a function set on the instance).
        return getattr(getattr(holder, "process_request", None), "__func__", None) is not inherited

    return own(application, BokehApplication.process_request) or any(
        own(handler, Handler.process_request) for handler in application.handlers
    )


def _frames_of(message: Message[Any]) -> list[str | bytes]:
    from .protocol import message_frames

    return list(message_frames(message))


# ---------------------------------------------------------------------------
# Sessions of one application
# ---------------------------------------------------------------------------


def _user_pk(request: SessionRequest | None) -> Any:
    user = request.user if request is not None else None
    return user.pk if getattr(user, "is_authenticated", False) else None


def _check_same_user(session: BokehSession, request: SessionRequest | None) -> BokehSession:
    owner = _user_pk(session.context.request)
    if owner is not None and owner != _user_pk(request):
        raise SessionRefused("This session belongs to another user.")
    return session


class AppSessions:
    """The live sessions of one application in this process, by id, and its lifecycle hooks."""

    def __init__(self, name: str, application: Application, logout_url: str | None = None) -> None:
        self.name = name
        self.application = application
        self.server_context = AppServerContext(self)
        self._logout_url = logout_url
        self._sessions: dict[str, BokehSession] = {}
        self._pending: dict[str, asyncio.Future[BokehSession]] = {}
        self._loaded: asyncio.Task[None] | None = None
        self.created_count = 0
        self.destroyed_count = 0

    @property
    def url(self) -> str:
        """The app's path below the prefix, as bokeh's ``ApplicationContext.url`` (``/sliders``)."""
        return f"/{self.name}"

    #: bokeh's private name of ``url``, which Panel reads to tell the prefix from the app path.
    _url = url

    @property
    def sessions(self) -> list[BokehSession]:
        return list(self._sessions.values())

    def get(self, session_id: str) -> BokehSession:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise SessionNotFound(session_id) from None

    async def get_when_created(self, session_id: str) -> BokehSession:
        """The session, waiting for its creation if one is in progress; SessionNotFound otherwise."""
        pending = self._pending.get(session_id)
        if pending is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(pending)
        return self.get(session_id)

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._sessions

    def has(self, session_id: str) -> bool:
        """Whether this process holds the session or is creating it."""
        return session_id in self._sessions or session_id in self._pending

    @property
    def pending(self) -> list[asyncio.Future[BokehSession]]:
        return list(self._pending.values())

    def start_loading(self) -> None:
        """Run on_server_loaded (in the app-code pool); sessions are created only after it."""
        if self._loaded is None:
            self._loaded = asyncio.get_running_loop().create_task(self.run_load_hook())

    @property
    def loading(self) -> bool:
        """Whether on_server_loaded has started and not yet ended (the readiness probe asks)."""
        return self._loaded is not None and not self._loaded.done()

    async def wait_loaded(self) -> None:
        if self._loaded is not None:
            await asyncio.shield(self._loaded)

    async def run_load_hook(self) -> None:
        await self._run_server_hook("on_server_loaded", self.application.on_server_loaded)

    async def run_unload_hook(self) -> None:
        await self.wait_loaded()
        await self._run_server_hook("on_server_unloaded", self.application.on_server_unloaded)

    async def _run_server_hook(self, what: str, hook: Callable[[AppServerContext], None]) -> None:
        try:
            await hooks.run(self.name, what, hook, self.server_context)
        except Exception:
            logger.error("Error in %s of app %r", what, self.name, exc_info=True)

    async def process_request(self, request: SessionRequest, session_id: str) -> dict[str, Any]:
        """What the app's ``process_request(request)`` returns for a new session's token.

        Runs in the app-code pool, after on_server_loaded, as bokeh serve runs it before
        the session exists. A failure is the app's: AppLoadError (its error page), logged
        with the traceback; past APP_CODE_TIMEOUT, AppTimedOut.
        """
        await self.wait_loaded()
        if not _has_process_request(self.application):
            return {}  # what bokeh's would return, without a trip to a pool thread and back
        try:
            extra = await hooks.run(self.name, "process_request", self.application.process_request, request)
        except AppCodeTimeout as exc:
            raise self._timed_out(exc, session_id) from None
        except Exception as exc:
            raise AppLoadError(self.name, f"process_request failed: {exc!r}\n{traceback.format_exc()}") from exc
        return dict(extra or {})

    async def get_or_create(
        self, session_id: str, request: SessionRequest | None, token: str, token_payload: dict[str, Any]
    ) -> BokehSession:
        """The session ``session_id``; created (app code run once) if this process has none.

        A session opened by a signed-in user belongs to that user: another user who learns
        its id (a shared link, a log line) is refused, since its document may hold that
        user's data.
        """
        if session_id in self._sessions:
            return _check_same_user(self._sessions[session_id], request)
        pending = self._pending.get(session_id)
        if pending is not None:
            return _check_same_user(await asyncio.shield(pending), request)
        if not runtime.accepting:
            # A stopping process creates nothing that its shutdown would not destroy.
            raise metrics.session_refused(self.name, NotAccepting("This server is restarting; new sessions are created by the others.", retry_after=1))
        future: asyncio.Future[BokehSession] = asyncio.get_running_loop().create_future()
        self._pending[session_id] = future
        try:
            session = await self._create(session_id, request, token, token_payload)
        except BaseException as exc:
            metrics.session_refused(self.name, exc)
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else needs to
            raise
        finally:
            del self._pending[session_id]
        self._sessions[session_id] = session
        future.set_result(session)
        return session

    async def _create(
        self, session_id: str, request: SessionRequest | None, token: str, token_payload: dict[str, Any]
    ) -> BokehSession:
        # Held until get_or_create files the session (no await in between), so that opens
        # in parallel count against the caps too.
        with runtime.reserve_capacity(request):
            return await self._build(session_id, request, token, token_payload)

    async def _build(
        self, session_id: str, request: SessionRequest | None, token: str, token_payload: dict[str, Any]
    ) -> BokehSession:
        document = Document()
        context = BokehSessionContext(
            session_id, self.server_context, document, request, token_payload, logout_url=self._logout_url
        )
        document._session_context = weakref.ref(context)
        await self.wait_loaded()
        try:
            await self.application.on_session_created(context)
        except AppCodeTimeout as exc:
            raise self._timed_out(exc, session_id) from None
        except Exception:
            logger.error("Error in on_session_created of app %r", self.name, exc_info=True)
        # App code runs in the app-code pool: it may use the Django ORM at module level, a
        # slow app does not stall the round trips of other sessions on the loop nor (past
        # its share of threads) the creation of other apps' sessions, and a sync Django view
        # may pull_session() from this same process without deadlock.
        try:
            failure = await hooks.run(
                self.name, "The app code", metrics.timed_app_code(self.name, _run_app_code), self.application, document,
                on_late_result=functools.partial(self._discard_late_document, context, document),
            )
        except AppCodeTimeout as exc:
            raise self._timed_out(exc, session_id) from None
        if failure is not None:
            with contextlib.suppress(Exception):
                await self.application.on_session_destroyed(context)
            raise AppLoadError(self.name, f"{failure.error}\n{failure.detail or ''}")
        session = BokehSession(session_id, document, context, token)
        context._session = session
        self.created_count += 1
        metrics.session_created(self.name)
        logger.debug("Created session %r of app %r", session_id, self.name)
        return session

    def _timed_out(self, exc: AppCodeTimeout, session_id: str) -> AppTimedOut:
        from .conf import bokeh_settings

        fate = (
            "its thread keeps running (Python cannot stop it) and holds one of the app's "
            f"{hooks.pool().per_app} threads until it ends"
            if exc.running else "it never started: the app's threads were all busy"
        )
        logger.error(
            "Refused session %r of app %r: %s did not finish within %g s (APP_CODE_TIMEOUT); %s.",
            session_id, self.name, exc.what, exc.limit, fate,
        )
        return AppTimedOut(
            f"The app {self.name!r} did not build its page within {exc.limit:g} seconds; other apps are not affected.",
            retry_after=max(int(exc.limit), bokeh_settings.UNAVAILABLE_RETRY_AFTER),
        )

    def _discard_late_document(self, context: BokehSessionContext, document: Document, done: Future[Any]) -> None:
        """A run past its time limit has ended: run the destroyed hooks and free its document."""

        async def discard() -> None:
            with contextlib.suppress(Exception):
                late_result(done)  # its failure, if any, was the refused session's
            try:
                await self.application.on_session_destroyed(context)
            except Exception:
                logger.error("Error in on_session_destroyed of app %r", self.name, exc_info=True)
            _destroy_unserved_document(document)
            logger.info("A run of app %r that passed its time limit has ended; its document is freed.", self.name)

        asyncio.get_running_loop().create_task(discard())

    async def discard(
        self,
        session: BokehSession,
        reason: str = "Session destroyed",
        only_if_unused: bool = False,
        close_code: int = CloseCode.SESSION_DESTROYED,
    ) -> bool:
        """Close the session's connections, destroy its document, then run on_session_destroyed.

        The order is bokeh's, except that the app module is cleared only after the hooks
        (bokeh serve clears it first, so hooks that use module globals fail there). The session
        leaves the table, and the destroy listeners (the cluster's owner record) hear of it,
        before its clients are closed, so their reconnects never find it. With
        ``only_if_unused``, a session that a client reattached to is kept. Returns whether
        the session was destroyed.
        """
        if only_if_unused and (session.connection_count > 0 or session.expiration_blocked):
            return False
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]
        elif session.destroyed:
            return False  # another discard got here first
        for listener in runtime.destroy_listeners:
            try:
                await listener(self.name, session.id)
            except Exception:
                logger.error("Error in a session-destroyed listener", exc_info=True)
        for connection in session.connections:
            connection.detach()
            with contextlib.suppress(Exception):
                await connection.close(close_code, reason)
        # bokeh's order (ApplicationContext._discard_session): the document is destroyed under
        # its lock, then the hooks run outside it. Panel's cleanup relies on that order.
        if not session.destroyed:
            await session.with_document_locked(session.destroy)
        try:
            await self.application.on_session_destroyed(session.context)
        except Exception:
            logger.error("Error in on_session_destroyed of app %r", self.name, exc_info=True)
        session.clear_modules()
        self.destroyed_count += 1
        metrics.session_destroyed(self.name)
        logger.debug("Destroyed session %r of app %r", session.id, self.name)
        return True

    def unused_sessions(self, lifetime_ms: int) -> list[BokehSession]:
        return [
            s
            for s in self._sessions.values()
            if s.connection_count == 0
            and not s.expiration_blocked
            and (s.milliseconds_since_last_unsubscribe > lifetime_ms or s.expiration_requested)
        ]


# ---------------------------------------------------------------------------
# The process-wide runtime
# ---------------------------------------------------------------------------


class SessionRuntime:
    """All AppSessions of this process, the unused-session reaper and server start/stop hooks."""

    def __init__(self) -> None:
        self._apps: dict[str, AppSessions] = {}
        self._started = False
        self._stopping = False
        #: False once the process stops taking new sessions (drain); see stop_accepting().
        self.accepting = True
        self._closed = False
        self._reaper: asyncio.Task[None] | None = None
        self._loggers: list[asyncio.Task[None]] = []
        #: Coroutines called with (app name, session id) after a session is destroyed.
        self.destroy_listeners: list[Callable[[str, str], Awaitable[None]]] = []
        #: Run after each sweep (CHECK_UNUSED_SESSIONS): checks that close connections whose
        #: access ended where no broadcast told this process (auth.py, bearer.py).
        self.sweep_checks: list[Callable[[], Awaitable[None]]] = []
        #: Requests of the sessions being created now (reserve_capacity).
        self._creating: list[SessionRequest | None] = []
        self._gc_handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle --------------------------------------------------------

    def ensure_started(self) -> None:
        """Load every app's server hooks and start the reaper, once, on the running loop."""
        if self._started:
            return
        if self._closed:
            raise NotAccepting("This server is shutting down.", retry_after=1)
        from . import registry
        from .conf import bokeh_settings

        self._loop = asyncio.get_running_loop()
        self._started = True
        freeze_startup_heap()
        raise_young_collection_threshold()
        for name, entry in registry.registered_apps().items():
            if entry.application is None:
                continue
            app_sessions = AppSessions(name, entry.application)
            self._apps[name] = app_sessions
            app_sessions.start_loading()
        self._reaper = self._loop.create_task(
            self._reap_forever(bokeh_settings.CHECK_UNUSED_SESSIONS, bokeh_settings.UNUSED_SESSION_LIFETIME)
        )
        self._loggers = [
            self._loop.create_task(self._log_forever(seconds, log))
            for seconds, log in (
                (bokeh_settings.STATS_LOG_FREQUENCY, self.log_stats),
                (bokeh_settings.MEM_LOG_FREQUENCY, self.log_memory),
            )
            if seconds
        ]
        metrics.start_sampling()
        logger.debug("Session runtime started for apps %s", sorted(self._apps))

    async def warm(self) -> None:
        """Run every app's code once, in a session created and destroyed at once (runbokeh --warm).

        As ``panel serve --warm``: module-level work (imports, ``pn.state.as_cached``) is done
        before the first visitor comes. A failure is logged; the app keeps being served.
        """
        from .signing import generate_session_id

        for name, app_sessions in list(self._apps.items()):
            try:
                # An empty request (no arguments, cookies or user): app code, Panel's
                # included, may read session_context.request as for any visitor.
                request = SessionRequest(path=app_sessions.url)
                session = await app_sessions.get_or_create(generate_session_id(), request, "", {})
            except Exception:
                logger.error("Warming app %r failed", name, exc_info=True)
                continue
            await app_sessions.discard(session, reason="Warm-up session")
            logger.info("Warmed app %r", name)

    def stop_accepting(self) -> None:
        """Create no more sessions, and do not start again (on_server_loaded runs once)."""
        self.accepting = False
        self._closed = True

    def reopen(self) -> None:
        """Allow a new start (a new event loop: tests, or a server started again in-process)."""
        self.accepting = True
        self._closed = False

    async def loading_apps(self, wait: float = 0) -> list[str]:
        """The apps whose on_server_loaded still runs (they create no session until it ends),
        after waiting up to ``wait`` seconds for them."""
        loads = [app_sessions._loaded for app_sessions in self._apps.values() if app_sessions.loading]
        if loads and wait > 0:
            await asyncio.wait(loads, timeout=wait)  # leaves them running past the wait
        return sorted(name for name, app_sessions in self._apps.items() if app_sessions.loading)

    @property
    def session_count(self) -> int:
        return sum(len(a.sessions) + len(a.pending) for a in self._apps.values())

    async def drain(self, timeout: float, cut_short: asyncio.Event | None = None) -> int:
        """Wait up to ``timeout`` s for live sessions to end; how many are left.

        Sessions left without connections are destroyed as soon as they are (their hooks
        run); sessions being created are waited for like any other.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for app_sessions in list(self._apps.values()):
                for session in app_sessions.sessions:
                    if session.connection_count == 0:
                        await app_sessions.discard(
                            session, reason="Server is restarting", only_if_unused=True, close_code=CloseCode.GOING_AWAY
                        )
            left = self.session_count
            remaining = deadline - loop.time()
            if left == 0 or remaining <= 0 or (cut_short is not None and cut_short.is_set()):
                return left
            if cut_short is None:
                await asyncio.sleep(min(0.2, remaining))
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(cut_short.wait(), min(0.2, remaining))

    async def shutdown(self) -> None:
        """Destroy every session (running on_session_destroyed), then run on_server_unloaded."""
        if not self._started or self._stopping:
            return
        self._stopping = True
        try:
            await self._shutdown()
        finally:
            self._stopping = False

    async def _shutdown(self) -> None:
        for task in [self._reaper, *self._loggers]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await metrics.stop_sampling()
        for app_sessions in self._apps.values():
            # Creations in progress finish first, so that their sessions are destroyed too.
            for pending in app_sessions.pending:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(pending), 30)
            for session in app_sessions.sessions:
                await app_sessions.discard(
                    session, reason="Server is shutting down; reconnecting", close_code=CloseCode.GOING_AWAY
                )
            await app_sessions.run_unload_hook()
        self._apps.clear()
        self._started = False
        if self._gc_handle is not None:
            self._gc_handle.cancel()
            self._gc_handle = None
        gc.collect()
        logger.info("Session runtime stopped")

    # -- lookup -----------------------------------------------------------

    def app(self, name: str) -> AppSessions:
        self.ensure_started()
        try:
            return self._apps[name]
        except KeyError:
            raise SessionNotFound(f"no sessions for app {name!r}") from None

    @property
    def apps(self) -> dict[str, AppSessions]:
        return dict(self._apps)

    @contextlib.contextmanager
    def reserve_capacity(self, request: SessionRequest | None) -> Iterator[None]:
        """Count a session being created against the caps while it is built; refuse it if over one.

        Check and reservation happen with no await in between, so parallel opens cannot
        all pass a check that none of them has been counted in yet.
        """
        self.check_capacity(request)
        self._creating.append(request)
        try:
            yield
        finally:
            self._creating.remove(request)

    def check_capacity(self, request: SessionRequest | None) -> None:
        """Refuse a new session when the process, its user or its address holds the maximum number.

        Live sessions and sessions being created both count.
        """
        from .conf import bokeh_settings

        limit = bokeh_settings.MAX_SESSIONS
        # Sessions being created are in _creating (and, per app, pending): count them once.
        holding = sum(len(a.sessions) for a in self._apps.values()) + len(self._creating)
        if limit and holding >= limit:
            raise ProcessFull(
                f"This server holds its maximum of {limit} sessions (MAX_SESSIONS); try again shortly.",
                retry_after=bokeh_settings.UNAVAILABLE_RETRY_AFTER,
            )
        if request is None:
            return
        per_user, per_address = bokeh_settings.MAX_SESSIONS_PER_USER, bokeh_settings.MAX_SESSIONS_PER_ADDRESS
        if not per_user and not per_address:
            return
        user_pk = getattr(request.user, "pk", None) if getattr(request.user, "is_authenticated", False) else None
        same_user = same_address = 0
        others = [s.context.request for a in self._apps.values() for s in a.sessions] + self._creating
        for other in others:
            if other is None:
                continue
            if user_pk is not None and getattr(other.user, "pk", None) == user_pk:
                same_user += 1
            if request.remote_ip and other.remote_ip == request.remote_ip:
                same_address += 1
        if per_user and user_pk is not None and same_user >= per_user:
            raise SessionRefused(f"User {user_pk} already has {same_user} live sessions (MAX_SESSIONS_PER_USER).")
        if per_address and request.remote_ip and same_address >= per_address:
            raise SessionRefused(
                f"Address {request.remote_ip} already has {same_address} live sessions (MAX_SESSIONS_PER_ADDRESS)."
            )

    # -- reaping ----------------------------------------------------------

    async def _reap_forever(self, interval_ms: int, lifetime_ms: int) -> None:
        while True:
            await asyncio.sleep(max(interval_ms, 50) / 1000)
            try:
                await self.reap(lifetime_ms)
            except Exception:
                logger.error("Error while discarding unused sessions", exc_info=True)
            for check in list(self.sweep_checks):
                try:
                    await check()
                except Exception:
                    logger.error("Error in the sweep check %s", getattr(check, "__qualname__", check), exc_info=True)

    async def reap(self, lifetime_ms: int) -> int:
        """Destroy sessions unused for longer than ``lifetime_ms``; return how many."""
        count = 0
        for app_sessions in list(self._apps.values()):
            for session in app_sessions.unused_sessions(lifetime_ms):
                if await app_sessions.discard(session, reason="Session expired", only_if_unused=True):
                    count += 1
                await asyncio.sleep(0)  # let round trips of live sessions through between two
        if count:
            logger.info("Discarded %d unused session(s)", count)
        return count

    async def _log_forever(self, seconds: int, log: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(seconds)
            log()

    def log_stats(self) -> None:
        """One line: live sessions and connections per app in this process (as bokeh serve's stats log)."""
        parts = []
        for name, app_sessions in sorted(self._apps.items()):
            sessions = app_sessions.sessions
            parts.append(f"{name}={len(sessions)}/{sum(s.connection_count for s in sessions)}")
        logger.info("[pid %d] live sessions/connections per app: %s", os.getpid(), ", ".join(parts) or "none")

    def stats(self) -> dict[str, dict[str, int]]:
        """Per app: live sessions, open connections, sessions created and destroyed so far."""
        return {
            name: {
                "sessions": len(app_sessions.sessions),
                "connections": sum(s.connection_count for s in app_sessions.sessions),
                "created": app_sessions.created_count,
                "destroyed": app_sessions.destroyed_count,
            }
            for name, app_sessions in sorted(self._apps.items())
        }

    def log_memory(self) -> None:
        """Resident memory of this process, and the number of live sessions."""
        logger.info(
            "[pid %d] memory: %.1f MiB resident, %d live session(s), %d gc objects",
            os.getpid(), resident_memory() / 2**20, sum(len(a.sessions) for a in self._apps.values()),
            len(gc.get_objects()),
        )

    def collect_garbage_soon(self, delay: float = 1.0) -> None:
        """Run one gc.collect() shortly, however many documents are destroyed meanwhile."""
        loop = self._loop
        if loop is None or self._gc_handle is not None:
            return

        def collect() -> None:
            self._gc_handle = None
            gc.collect()
            release_free_memory()

        self._gc_handle = loop.call_later(delay, collect)


def freeze_startup_heap() -> None:
    """Move every object alive now out of the garbage collector's reach (``gc.freeze()``).

    What a serving process has loaded by now (Django, Twisted, autobahn, bokeh's models,
    the site's modules) lives as long as the process. CPython's full collections, which
    session opens trigger by allocating many models, the collect after destroyed documents
    (collect_garbage_soon) and the one at interpreter exit would traverse all of it each time:
    ~170,000 objects, ~190 ms per full collection on a 2-core test machine, next to nothing
    once frozen. Frozen objects are still freed by reference counting; only cycles among them
    are no longer collected, and the garbage of start-up is collected first.
    """
    gc.collect()
    gc.freeze()


#: CPython's first collection threshold: a young collection every 700 container objects
#: allocated (net of those freed).
CPYTHON_YOUNG_THRESHOLD = 700
#: The first threshold while serving sessions.
SERVING_YOUNG_THRESHOLD = 10_000


def raise_young_collection_threshold() -> bool:
    """Collect young objects every 10,000 allocations instead of every 700; whether it did.

    A session open allocates tens of thousands of objects (the app's models, the document's
    serialisation), so at 700 the collector runs dozens of times per open, and each young
    collection also walks what those objects refer to; every tenth of them goes a generation
    up, and full collections follow. With 1,000 sessions opened and held (20 at a time), this
    took the collector's time from 12 to 4.9 s and the opens from 7.8 to 8.2-8.8 per second,
    with the same memory per session (docs/benchmarks.md). Left alone when the site, or
    anything before it, has set its own thresholds.
    """
    young, middle, old = gc.get_threshold()
    if young != CPYTHON_YOUNG_THRESHOLD:
        return False
    gc.set_threshold(SERVING_YOUNG_THRESHOLD, middle, old)
    return True


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): its allocator returns memory its own way


def release_free_memory() -> bool:
    """Hand the allocator's free memory back to the system (glibc's malloc_trim); whether it could.

    Destroyed documents leave many small free blocks in glibc's arenas, which it keeps:
    without this, RSS stays at its peak after a wave of sessions ends.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def resident_memory() -> int:
    """Resident set size of this process in bytes (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


runtime = SessionRuntime()

"""Django's ASGI handler with fewer trips between the event loop and threads per request.

A site's asgi.py uses it in place of Django's ``get_asgi_application``::

    from bokehserve_django.handlers import get_asgi_application
    django_application = get_asgi_application()

Same middleware, views, signals and responses as Django's ``ASGIHandler``; what differs is
where the synchronous parts run:

- **One thread trip for the middleware.** Django's default middleware are sync-capable
  ``MiddlewareMixin`` classes. Under Django's ASGI handler each one's ``process_request``
  and ``process_response`` is a separate ``sync_to_async`` call, each a thread wake-up, a
  GIL hand-over and a loop wake-up. Here the whole chain runs in one trip,
  as under a WSGI server; an async view is awaited on the event loop from there
  (``async_to_sync``, as Django itself does for an async view behind sync middleware), and
  async-only middleware is adapted the same way.
- **A kept thread per request.** Django's handler gives every request a new thread for its
  thread-sensitive sync code (``ThreadSensitiveContext``), started on its first sync call,
  and when the request ends it waits while one more new thread joins that one (asgiref
  3.13). Here a request borrows an idle single-thread executor kept from earlier requests
  (asgiref's ``ThreadSensitiveContext(executor=...)``) and returns it afterwards. Requests in
  progress at the same time still each have a thread of their own; a thread's
  thread-locals (a database connection among them) carry over to the next request on it,
  as on a WSGI server's threads, so ``CONN_MAX_AGE`` works as it does there.

- **Django's start and end of a request in that same trip.** ``request_started``, the
  request's creation, the chain, and, for a response that is not streamed, ``response.close()``
  (which sends ``request_finished``) run in the one trip, so the whole response is finished
  before its first byte is sent. Django's handler makes three trips of these, the last one
  after the body is on its way, when the browser is already opening the page's WebSocket. A
  streamed response is closed after its last chunk, in its own trip, as Django does.

A Bokeh page of the demo site (``startproject``'s seven middleware) makes 2 trips between
the loop and a thread (the trip above, and the page view back on the loop from it) instead
of 15. Keep Django's own handler for middleware that must run its async path
(``__acall__``) on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.http import FileResponse, HttpResponseBase
from django.urls import set_script_prefix

__all__ = ("BokehASGIHandler", "get_asgi_application")

#: Idle request threads kept for the next requests; more concurrent requests than this still
#: get a thread each, which ends with its request.
KEPT_REQUEST_THREADS = 32


class _RequestThreads:
    """Single-thread executors lent to requests, one at a time each (event loop thread only)."""

    def __init__(self, keep: int) -> None:
        self._idle: list[ThreadPoolExecutor] = []
        self._keep = keep

    def borrow(self) -> ThreadPoolExecutor:
        if self._idle:
            return self._idle.pop()
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="django-request")

    def give_back(self, executor: ThreadPoolExecutor) -> None:
        if len(self._idle) < self._keep:
            self._idle.append(executor)
        else:
            executor.shutdown(wait=False)

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for executor in idle:
            executor.shutdown(wait=False)


class BokehASGIHandler(ASGIHandler):
    """Django's ``ASGIHandler``, its middleware chain run in one thread trip, on a kept thread."""

    def __init__(self, keep_threads: int = KEPT_REQUEST_THREADS) -> None:
        BaseHandler.__init__(self)
        # A sync chain: Django adapts an async view (and async-only middleware) inside it.
        self.load_middleware(is_async=False)
        self.request_threads = _RequestThreads(keep_threads)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self.request_threads.borrow()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self.request_threads.give_back(executor)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's ``ASGIHandler.handle``, with its thread trips made one (the module says how)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        # As Django: a client that disconnects before the response is sent cancels the rest.
        listening = asyncio.ensure_future(self.listen_for_disconnect(receive))
        serving = asyncio.ensure_future(self._serve(scope, body_file, send))
        try:
            await asyncio.wait([listening, serving], return_when=asyncio.FIRST_COMPLETED)
            if not serving.done():
                with contextlib.suppress(RequestAborted):
                    listening.result()  # the client went away: drop the response
                serving.cancel()
            try:
                await serving
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():
                    raise  # this request itself is cancelled (the server is stopping)
        finally:
            listening.cancel()
            serving.cancel()  # a no-op once it is done
            body_file.close()

    async def _serve(self, scope: dict[str, Any], body_file: Any, send: Any) -> None:
        made = asyncio.ensure_future(sync_to_async(self._respond, thread_sensitive=True)(scope, body_file))
        try:
            # Shielded: a disconnect does not lose a response that still has to be closed.
            response = await asyncio.shield(made)
        except asyncio.CancelledError:
            made.add_done_callback(_close_streamed_when_abandoned)
            raise
        if not response.streaming:
            await self.send_response(response, send)  # closed in its thread already
            return
        try:
            await self.send_response(response, send)
        finally:
            await sync_to_async(response.close, thread_sensitive=True)()

    def _respond(self, scope: dict[str, Any], body_file: Any) -> HttpResponseBase:
        """The request's whole synchronous part, in its thread: started, made, and finished
        unless it is streamed (its chunks are still to come)."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            # BaseHandler.get_response: URLconf, the middleware chain (the view inside it),
            # and the logging of 4xx/5xx responses.
            response = self.get_response(request)
            response._handler_class = self.__class__
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size  # the ASGI server chunks it
        if not response.streaming:
            response.close()
        return response


def _close_streamed_when_abandoned(made: asyncio.Future[HttpResponseBase]) -> None:
    """A streamed response made for a client that left: close it (request_finished) anyway."""
    if made.cancelled() or made.exception() is not None:
        return
    response = made.result()
    if response.streaming:
        # Its iterator may hold a file or a database cursor; close it in a thread, as Django would.
        closing = asyncio.ensure_future(sync_to_async(response.close, thread_sensitive=False)())
        _closing.add(closing)  # the loop keeps only a weak reference to a task
        closing.add_done_callback(_closing.discard)


#: Closes of abandoned streamed responses still running (held until they end).
_closing: set[asyncio.Future[None]] = set()


def get_asgi_application() -> BokehASGIHandler:
    """As ``django.core.asgi.get_asgi_application``: set Django up, return the handler."""
    import django

    django.setup(set_prefix=False)
    return BokehASGIHandler()

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

A Bokeh page of the demo site (``startproject``'s seven middleware) makes 4 trips between
the loop and a thread (request_started, the chain, the page view back on the loop,
response.close) instead of 15. Keep Django's own handler for middleware that
must run its async path (``__acall__``) on the event loop.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler

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

    async def get_response_async(self, request: Any) -> Any:
        # BaseHandler.get_response: URLconf, the middleware chain (the view inside it), and
        # logging of 4xx/5xx responses, all in this request's thread.
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


def get_asgi_application() -> BokehASGIHandler:
    """As ``django.core.asgi.get_asgi_application``: set Django up, return the handler."""
    import django

    django.setup(set_prefix=False)
    return BokehASGIHandler()

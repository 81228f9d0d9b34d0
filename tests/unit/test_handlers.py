"""BokehASGIHandler: Django's requests with the middleware chain in one thread trip, on kept threads.

The requests go through the handler as an ASGI server sends them (channels' HttpCommunicator);
this module is its own URLconf, and its middleware record the thread each step runs in.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from channels.testing import HttpCommunicator
from django.core.signals import request_finished, request_started
from django.http import HttpResponse, StreamingHttpResponse
from django.test import override_settings
from django.urls import path
from django.utils.decorators import sync_and_async_middleware

from bokehserve_django.handlers import BokehASGIHandler

TIMEOUT = 10
#: (step, thread ident) for every middleware step and view of the requests in a test.
steps: list[tuple[str, int]] = []
release_blocked = threading.Event()


class RecordingMiddleware:
    """A plain (sync-only) middleware, as most sites' own are."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        steps.append(("middleware in", threading.get_ident()))
        response = self.get_response(request)
        steps.append(("middleware out", threading.get_ident()))
        return response


@sync_and_async_middleware
def both_ways_middleware(get_response: Any) -> Any:
    """A sync- and async-capable middleware: the handler must call its sync path."""
    if asyncio.iscoroutinefunction(get_response):

        async def middleware(request: Any) -> Any:
            steps.append(("async path", threading.get_ident()))
            return await get_response(request)

    else:

        def middleware(request: Any) -> Any:
            steps.append(("sync path", threading.get_ident()))
            return get_response(request)

    return middleware


def sync_view(request: Any) -> HttpResponse:
    steps.append(("sync view", threading.get_ident()))
    return HttpResponse("sync")


async def async_view(request: Any) -> HttpResponse:
    steps.append(("async view", threading.get_ident()))
    await asyncio.sleep(0)
    return HttpResponse("async")


def blocked_view(request: Any) -> HttpResponse:
    steps.append(("blocked view", threading.get_ident()))
    release_blocked.wait(TIMEOUT)
    return HttpResponse("released")


def failing_view(request: Any) -> HttpResponse:
    raise RuntimeError("the view failed")


def streamed_view(request: Any) -> StreamingHttpResponse:
    async def chunks():
        steps.append(("chunk", threading.get_ident()))
        yield b"one,"
        steps.append(("chunk", threading.get_ident()))
        yield b"two"

    return StreamingHttpResponse(chunks())


def blocked_streamed_view(request: Any) -> StreamingHttpResponse:
    release_blocked.wait(TIMEOUT)
    return streamed_view(request)


urlpatterns = [
    path("sync", sync_view),
    path("async", async_view),
    path("blocked", blocked_view),
    path("fail", failing_view),
    path("streamed", streamed_view),
    path("blocked-streamed", blocked_streamed_view),
]

MIDDLEWARE = [f"{__name__}.RecordingMiddleware", f"{__name__}.both_ways_middleware"]


@pytest.fixture
def handler() -> Any:
    steps.clear()
    release_blocked.clear()
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE, ALLOWED_HOSTS=["testserver"]):
        handler = BokehASGIHandler(keep_threads=2)
        yield handler
        handler.request_threads.close()
    release_blocked.set()


@pytest.fixture
def signals_seen() -> Any:
    """Records request_started and request_finished into ``steps``, with their thread."""

    def started(**kwargs: Any) -> None:
        steps.append(("request_started", threading.get_ident()))

    def finished(**kwargs: Any) -> None:
        steps.append(("request_finished", threading.get_ident()))

    request_started.connect(started)
    request_finished.connect(finished)
    yield
    request_started.disconnect(started)
    request_finished.disconnect(finished)


async def call(handler: Any, url: str, *, disconnect_after: float | None = None) -> list[str]:
    """The handler driven as an ASGI server does; what it sends lands in ``steps`` in order.

    With ``disconnect_after``, the client leaves that many seconds after its request.
    """
    scope = {"type": "http", "method": "GET", "path": url, "query_string": b"", "headers": [(b"host", b"testserver")]}
    messages = [{"type": "http.request", "body": b""}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        if disconnect_after is None:
            await asyncio.Event().wait()  # no more until the handler cancels it
        await asyncio.sleep(disconnect_after)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        steps.append((f"sent {message['type']} {message.get('body', b'')!r}", threading.get_ident()))

    await asyncio.wait_for(handler(scope, receive, send), TIMEOUT)
    return [step for step, _ in steps]


async def get(handler: Any, url: str) -> dict[str, Any]:
    communicator = HttpCommunicator(handler, "GET", url, headers=[(b"host", b"testserver")])
    response = await communicator.get_response(timeout=TIMEOUT)
    await communicator.wait(TIMEOUT)  # the handler's work after the response: response.close()
    return response


async def test_the_middleware_chain_and_a_sync_view_run_in_one_thread_off_the_loop(handler) -> None:
    response = await get(handler, "/sync")
    assert (response["status"], response["body"]) == (200, b"sync")
    assert [step for step, _ in steps] == ["middleware in", "sync path", "sync view", "middleware out"]
    threads = {thread for _, thread in steps}
    assert len(threads) == 1
    assert threads != {threading.get_ident()}


async def test_an_async_view_is_awaited_on_the_event_loop(handler) -> None:
    response = await get(handler, "/async")
    assert (response["status"], response["body"]) == (200, b"async")
    views = [thread for step, thread in steps if step == "async view"]
    middleware = {thread for step, thread in steps if step != "async view"}
    assert views == [threading.get_ident()]  # the test's event loop
    assert len(middleware) == 1 and middleware != {threading.get_ident()}


async def test_a_request_reuses_the_thread_of_an_earlier_one(handler) -> None:
    await get(handler, "/sync")
    await get(handler, "/sync")
    assert len({thread for _, thread in steps}) == 1


async def test_requests_in_progress_together_each_have_their_own_thread(handler) -> None:
    blocked = asyncio.ensure_future(get(handler, "/blocked"))
    for _ in range(200):  # until the blocked view holds its thread
        if any(step == "blocked view" for step, _ in steps):
            break
        await asyncio.sleep(0.01)
    # With one thread for both, this request would wait for the blocked one: it must not.
    response = await get(handler, "/sync")
    assert response["status"] == 200
    assert not blocked.done()
    release_blocked.set()
    assert (await blocked)["body"] == b"released"
    blocked_thread = next(thread for step, thread in steps if step == "blocked view")
    sync_thread = next(thread for step, thread in steps if step == "sync view")
    assert blocked_thread != sync_thread


async def test_threads_beyond_the_kept_number_end_with_their_request(handler) -> None:
    executors = [handler.request_threads.borrow() for _ in range(3)]
    for executor in executors:
        handler.request_threads.give_back(executor)
    assert len(handler.request_threads._idle) == 2
    assert executors[2]._shutdown


async def test_a_failing_view_is_a_500_and_the_request_still_finishes(handler) -> None:
    finished: list[Any] = []

    def on_finished(**kwargs: Any) -> None:
        finished.append(threading.get_ident())

    request_finished.connect(on_finished)
    try:
        with override_settings(DEBUG=False):
            response = await get(handler, "/fail")
    finally:
        request_finished.disconnect(on_finished)
    assert response["status"] == 500
    assert len(finished) == 1
    # request_finished (response.close) runs in the request's thread, as the middleware did.
    assert finished[0] == next(thread for step, thread in steps if step == "middleware in")


async def test_a_request_starts_and_finishes_in_its_thread_before_its_first_byte_is_sent(handler, signals_seen) -> None:
    """Django's handler sends the body, then closes the response in one more trip, while the
    browser already opens the page's WebSocket: here all of it is one trip, done first."""
    assert await call(handler, "/sync") == [
        "request_started", "middleware in", "sync path", "sync view", "middleware out", "request_finished",
        "sent http.response.start b''", "sent http.response.body b'sync'",
    ]
    threads = {thread for step, thread in steps if not step.startswith("sent")}
    assert len(threads) == 1 and threads != {threading.get_ident()}


async def test_a_streamed_response_is_finished_after_its_last_chunk(handler, signals_seen) -> None:
    assert await call(handler, "/streamed") == [
        "request_started", "middleware in", "sync path", "middleware out",
        "sent http.response.start b''",
        "chunk", "sent http.response.body b'one,'", "chunk", "sent http.response.body b'two'",
        "sent http.response.body b''", "request_finished",
    ]


@pytest.mark.parametrize("url", ["/blocked", "/blocked-streamed"])
async def test_a_client_that_leaves_during_the_view_gets_nothing_and_the_request_still_finishes(
    handler, signals_seen, url
) -> None:
    await call(handler, url, disconnect_after=0.05)  # returns without waiting for the blocked view
    assert not any(step.startswith("sent") for step, _ in steps)
    release_blocked.set()
    for _ in range(200):  # the view's thread ends on its own; a streamed response is closed after it
        if any(step == "request_finished" for step, _ in steps):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # room for a second request_finished, which must not come
    assert [step for step, _ in steps].count("request_finished") == 1
    assert not any(step.startswith("sent") or step == "chunk" for step, _ in steps)

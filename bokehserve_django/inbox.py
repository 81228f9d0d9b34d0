"""Provides ``Inbox``: the queue daphne puts a connection's ASGI events in, and its application reads.

daphne makes an ``asyncio.Queue`` per connection, and a WebSocket's lives as long as the
connection: three deques and an ``Event`` (with a fourth), about 3 KiB per open Bokeh
session, where daphne only ever calls ``put_nowait`` and the application only awaits
``get``, one call at a time. An Inbox holds what that needs: the events not read yet
(a deque, only while there are some: an idle WebSocket holds none) and the reader's
wake-up future.
No daphne or Django imports: ``BokehDaphneServer.create_application`` hands it out.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

__all__ = ("Inbox",)


class Inbox:
    """A FIFO of ASGI events for one reader: ``put_nowait`` from the loop, ``await get()``.

    Always true, like an ``asyncio.Queue``: daphne's HTTP request tests ``if
    self.application_queue:`` to mean "an application was started" (so: no ``__len__``).
    """

    __slots__ = ("_events", "_reader")

    def __init__(self) -> None:
        self._events: deque[dict[str, Any]] | None = None
        self._reader: asyncio.Future[None] | None = None

    def put_nowait(self, event: dict[str, Any]) -> None:
        if self._events is None:
            self._events = deque()
        self._events.append(event)
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    async def get(self) -> dict[str, Any]:
        # The event stays queued until the reader resumes, so a reader cancelled after its
        # wake-up leaves it for the next get(), as asyncio.Queue does.
        while not self._events:
            if self._reader is not None:
                raise RuntimeError("Inbox.get() is already being awaited; an inbox has one reader.")
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        event = self._events.popleft()
        if not self._events:
            self._events = None
        return event

    def qsize(self) -> int:
        """Events not read yet (asyncio.Queue's name, for code that inspects daphne's queues)."""
        return len(self._events) if self._events else 0

"""bokehserve_django.inbox.Inbox: the per-connection event queue daphne's application reads."""

from __future__ import annotations

import asyncio

import pytest

from bokehserve_django.inbox import Inbox


class TestInbox:
    async def test_events_come_out_in_the_order_they_went_in(self) -> None:
        inbox = Inbox()
        for n in range(3):
            inbox.put_nowait({"type": "websocket.receive", "n": n})
        assert [(await inbox.get())["n"] for _ in range(3)] == [0, 1, 2]
        assert inbox.qsize() == 0

    async def test_a_waiting_reader_gets_the_next_event(self) -> None:
        inbox = Inbox()
        reader = asyncio.ensure_future(inbox.get())
        await asyncio.sleep(0)
        assert not reader.done()
        inbox.put_nowait({"type": "websocket.connect"})
        assert await asyncio.wait_for(reader, 5) == {"type": "websocket.connect"}

    async def test_a_reader_cancelled_after_its_wake_up_leaves_the_event_queued(self) -> None:
        inbox = Inbox()
        reader = asyncio.ensure_future(inbox.get())
        await asyncio.sleep(0)
        inbox.put_nowait({"type": "websocket.disconnect"})
        reader.cancel()  # woken, but not yet resumed
        with pytest.raises(asyncio.CancelledError):
            await reader
        assert inbox.qsize() == 1
        assert await inbox.get() == {"type": "websocket.disconnect"}

    def test_an_empty_inbox_is_true_as_daphne_expects_of_its_queue(self) -> None:
        assert Inbox()

    async def test_an_idle_inbox_holds_no_queue(self) -> None:
        inbox = Inbox()
        inbox.put_nowait({"type": "websocket.connect"})
        await inbox.get()
        assert inbox._events is None

    async def test_a_second_concurrent_reader_is_refused(self) -> None:
        inbox = Inbox()
        first = asyncio.ensure_future(inbox.get())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="one reader"):
            await inbox.get()
        inbox.put_nowait({"type": "websocket.connect"})
        assert (await first)["type"] == "websocket.connect"

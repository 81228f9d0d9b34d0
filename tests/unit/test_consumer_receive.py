"""BokehConsumer reads its messages straight from receive(), with no Task per receive."""

from __future__ import annotations

import asyncio

from channels.exceptions import StopConsumer

from bokehserve_django.consumers import BokehConsumer


class Recording(BokehConsumer):
    def __init__(self) -> None:
        self.handled: list[str] = []
        self.tasks_while_waiting: set[asyncio.Task] = set()

    async def websocket_receive(self, event):
        self.handled.append(event["text"])

    async def websocket_disconnect(self, event):
        self.handled.append("disconnect")
        raise StopConsumer()


async def test_messages_are_dispatched_in_order_until_the_disconnect() -> None:
    consumer = Recording()
    messages = asyncio.Queue()
    for text in ("a", "b"):
        messages.put_nowait({"type": "websocket.receive", "text": text})

    async def receive():
        if messages.empty():
            consumer.tasks_while_waiting = asyncio.all_tasks()
            messages.put_nowait({"type": "websocket.disconnect", "code": 1000})
        return await messages.get()

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    runner = asyncio.ensure_future(consumer({"type": "websocket"}, receive, send))
    await asyncio.wait_for(runner, 5)  # returns once the disconnect handler stops the consumer
    assert consumer.handled == ["a", "b", "disconnect"]
    # The consumer's own task waits on receive(): no helper task per receive.
    assert consumer.tasks_while_waiting - {asyncio.current_task()} == {runner}
    await consumer.send({"type": "websocket.close"})
    assert sent == [{"type": "websocket.close"}]

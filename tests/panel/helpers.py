"""Drives Panel apps in-process as a browser would: page, WebSocket, document_ready, widget changes."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Callable
from typing import Any

from bokeh.document import Document
from bokeh.document.events import MessageSentEvent, ModelChangedEvent
from bokeh.events import DocumentReady
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient

from tests.asgi import application
from tests.bokeh_client import PROTOCOL

HEADERS = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"user-agent", b"panel-test-agent")]

def token_of(html: str) -> str:
    return re.search(r'"token":"([^"]+)"', html).group(1)


def texts(document: Document) -> list[str]:
    """The text of every model that has one (Markdown panes render into an HTML model's text, escaped)."""
    return [html.unescape(str(m.text)) for m in document.models if "text" in m.properties() and m.text]


def has_text(fragment: str) -> Callable[[Document], bool]:
    return lambda document: any(fragment in text for text in texts(document))


class PanelPage:
    """One browser tab on a Panel app: its session's document, kept in sync over the WebSocket."""

    def __init__(self, communicator: WebsocketCommunicator, document: Document, html: str) -> None:
        self.communicator = communicator
        self.document = document
        self.html = html

    @classmethod
    async def open(cls, app: str, query: str = "", client: AsyncClient | None = None) -> PanelPage:
        """The app's own page, as a browser opening ``/<app><query>``."""
        return await cls._open(app, f"/{app}{query}", client)

    @classmethod
    async def open_embedded(cls, app: str, absolute_url: str, client: AsyncClient | None = None) -> PanelPage:
        """The app embedded in another page: autoload.js as bokeh's ``server_document`` asks for it."""
        query = f"bokeh-autoload-element=embed&bokeh-app-path=/{app}&bokeh-absolute-url={absolute_url}"
        return await cls._open(app, f"/{app}/autoload.js?{query}", client)

    @classmethod
    async def _open(cls, app: str, url: str, client: AsyncClient | None) -> PanelPage:
        client = client or AsyncClient()
        response = await client.get(url, headers={"user-agent": "panel-test-agent"})
        assert response.status_code == 200, response.content.decode()[:2000]
        html = response.content.decode()
        cookie = "; ".join(f"{k}={v.value}" for k, v in client.cookies.items())
        headers = list(HEADERS) + ([(b"cookie", cookie.encode())] if cookie else [])
        communicator = WebsocketCommunicator(
            application, f"/{app}/ws", headers=headers, subprotocols=["bokeh", token_of(html)]
        )
        connected, _ = await communicator.connect(10)
        assert connected
        page = cls(communicator, Document(), html)
        assert (await page.receive()).msgtype == "ACK"
        await page.send(PROTOCOL.create("PULL-DOC-REQ"))
        reply = await page.receive()
        assert reply.msgtype == "PULL-DOC-REPLY", reply.content
        reply.push_to_document(page.document)
        return page

    async def receive(self, seconds: float = 10):
        """The next whole message, with its buffers (Tabulator's columns travel as binary buffers)."""
        frames = [await self.communicator.receive_from(seconds) for _ in range(3)]
        message = PROTOCOL.assemble(*frames)
        for _ in range(json.loads(frames[0]).get("num_buffers", 0)):
            buffer_header = json.loads(await self.communicator.receive_from(seconds))
            message.assemble_buffer(buffer_header, await self.communicator.receive_from(seconds))
        return message

    async def send(self, message) -> None:
        for frame in (message.header_json, message.metadata_json, message.content_json):
            await self.communicator.send_to(text_data=frame)

    async def document_ready(self) -> None:
        """What BokehJS sends once it has rendered the page (Panel's onload callbacks wait for it)."""
        event = MessageSentEvent(self.document, "bokeh_event", DocumentReady())
        await self.send(PROTOCOL.create("PATCH-DOC", [event]))

    async def change(self, model: Any, attr: str, value: Any) -> None:
        """Set a model's property as a browser would: locally, then as a PATCH-DOC to the server."""
        setattr(model, attr, value)
        await self.send(PROTOCOL.create("PATCH-DOC", [ModelChangedEvent(self.document, model, attr, value)]))

    async def wait_for(self, condition: Callable[[Document], bool], seconds: float = 10) -> None:
        """Apply the server's changes until ``condition(document)`` holds; fail after ``seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not condition(self.document):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"condition not met within {seconds} s; texts now: {texts(self.document)}")
            try:
                message = await self.receive(remaining)
            except TimeoutError:
                continue
            if message.msgtype == "PATCH-DOC":
                message.apply_to_document(self.document)

    def one(self, model_type: type) -> Any:
        (model,) = [m for m in self.document.models if isinstance(m, model_type)]
        return model

    async def close(self) -> None:
        await self.communicator.disconnect()

"""What app code can rely on under Django: the user, the ORM, and a clear error when it breaks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bokeh.document import Document
from bokeh.document.events import ModelChangedEvent
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import AsyncClient

from bokehserve_django import registry
from bokehserve_django.sessions import runtime
from tests.asgi import application
from tests.bokeh_client import PROTOCOL

APPS = Path(__file__).resolve().parents[1] / "apps"
HEADERS = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]


@pytest.fixture(autouse=True)
async def stop_runtime():
    yield
    await runtime.shutdown()


def token_of(html: str) -> str:
    return re.search(r'"token":"([^"]+)"', html).group(1)


async def receive_message(communicator: WebsocketCommunicator):
    frames = [await communicator.receive_from(10) for _ in range(3)]
    return PROTOCOL.assemble(*frames)


async def open_document(token: str, path: str, cookie: str | None = None):
    headers = list(HEADERS) + ([(b"cookie", cookie.encode())] if cookie else [])
    communicator = WebsocketCommunicator(application, path, headers=headers, subprotocols=["bokeh", token])
    connected, _ = await communicator.connect(10)
    assert connected
    assert (await receive_message(communicator)).msgtype == "ACK"
    for frame in _frames(PROTOCOL.create("PULL-DOC-REQ")):
        await communicator.send_to(text_data=frame)
    reply = await receive_message(communicator)
    document = Document()
    reply.push_to_document(document)
    return communicator, document


def _frames(message) -> list[str]:
    return [message.header_json, message.metadata_json, message.content_json]


async def set_and_wait(communicator: WebsocketCommunicator, document: Document, name: str, value: str):
    """Set a widget's value as a browser would; the new value of the server's answering change."""
    widget = document.get_model_by_name(name)
    widget.value = value
    event = ModelChangedEvent(document, widget, "value", value)
    for frame in _frames(PROTOCOL.create("PATCH-DOC", [event])):
        await communicator.send_to(text_data=frame)
    for _ in range(10):
        message = await receive_message(communicator)
        if message.msgtype == "PATCH-DOC":
            return message.content["events"][0].get("new")
    raise AssertionError(f"the app answered the change of {name!r} with no PATCH-DOC")


@pytest.mark.django_db(transaction=True)
async def test_app_code_sees_the_django_user_and_uses_the_orm() -> None:
    users = get_user_model()._default_manager
    carol = await users.acreate_user("carol")
    await users.acreate_user("dave")
    client = AsyncClient()
    await client.aforce_login(carol)
    response = await client.get("/whoami")
    assert response.status_code == 200
    cookie = "; ".join(f"{k}={v.value}" for k, v in client.cookies.items())
    communicator, document = await open_document(token_of(response.content.decode()), "/whoami/ws", cookie)
    try:
        assert document.get_model_by_name("user").text == "carol"
        assert document.get_model_by_name("users_at_start").text == "2"
        # A run_in_thread callback queries the ORM and changes the document.
        found = await set_and_wait(communicator, document, "lookup", "dave")
        assert found == "dave: exists"
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_anonymous_sessions_see_an_anonymous_user() -> None:
    response = await AsyncClient().get("/whoami")
    communicator, document = await open_document(token_of(response.content.decode()), "/whoami/ws")
    try:
        assert document.get_model_by_name("user").text == "anonymous"
    finally:
        await communicator.disconnect()


@pytest.mark.parametrize("debug", [True, False])
async def test_a_broken_app_gets_an_error_page_and_the_others_keep_working(settings, debug) -> None:
    settings.DEBUG = debug
    settings.BOKEHSERVE = {
        **settings.BOKEHSERVE,
        "APPS": {
            "echo": APPS / "echo.py",
            "syntax": APPS / "broken" / "syntax_error.py",
            "raises": APPS / "broken" / "raises.py",
        },
    }
    registry.reset()
    client = AsyncClient()
    try:
        for name, detail in (("syntax", "SyntaxError"), ("raises", "broken on purpose")):
            response = await client.get(f"/{name}")
            assert response.status_code == 500
            body = response.content.decode()
            assert f"“{name}” failed" in body
            assert (detail in body) is debug  # the traceback only for developers
        assert (await client.get("/echo")).status_code == 200
    finally:
        registry.reset()


async def test_a_notebook_is_served_as_an_app() -> None:
    response = await AsyncClient().get("/notebook")
    assert response.status_code == 200
    communicator, document = await open_document(token_of(response.content.decode()), "/notebook/ws")
    try:
        assert document.get_model_by_name("output").text == "from a notebook"
        assert await set_and_wait(communicator, document, "text_input", "abc") == "cba"
    finally:
        await communicator.disconnect()

"""The index at the prefix root: list, redirect to a single app, disabled, or a custom template."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import AsyncClient

from bokehserve_django import registry
from bokehserve_django.sessions import runtime

APPS = Path(__file__).resolve().parents[1] / "apps"


@pytest.fixture
def client(settings):
    registry.reset()
    yield AsyncClient()
    registry.reset()


@pytest.fixture(autouse=True)
async def stop_runtime():
    yield
    await runtime.shutdown()


async def test_lists_every_app(client) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert b'href="/echo"' in response.content and b'href="/hooks"' in response.content


async def test_single_app_redirects_unless_disabled(client, settings) -> None:
    settings.BOKEHSERVE = {"APPS": {"echo": APPS / "echo.py"}}
    response = await client.get("/")
    assert (response.status_code, response["Location"]) == (302, "/echo")
    settings.BOKEHSERVE = {"APPS": {"echo": APPS / "echo.py"}, "DISABLE_INDEX_REDIRECT": True}
    assert (await client.get("/")).status_code == 200


async def test_disabled_index_is_404(client, settings) -> None:
    settings.BOKEHSERVE = {**settings.BOKEHSERVE, "DISABLE_INDEX": True}
    assert (await client.get("/")).status_code == 404


async def test_custom_template_gets_bokeh_serves_variables(client, settings, tmp_path) -> None:
    template = tmp_path / "index.html"
    template.write_text("<ul>{% for item in items %}<li>{{ prefix }}{{ item }}</li>{% endfor %}</ul>")
    settings.BOKEHSERVE = {**settings.BOKEHSERVE, "INDEX_TEMPLATE": str(template)}
    response = await client.get("/")
    assert b"<li>/echo</li>" in response.content

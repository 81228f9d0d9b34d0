"""Panel apps get Panel's page (its template, local stylesheets, loading spinner); Bokeh apps keep bokeh's."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("panel")

from bokeh.models import ImportedStyleSheet
from django.test import AsyncClient

from tests.panel.helpers import PanelPage

pytestmark = pytest.mark.usefixtures("panel_apps")


def script_urls(html: str) -> list[str]:
    return re.findall(r'<script[^>]*src="([^"]+)"', html)


async def test_a_panel_app_s_page_is_panel_s_with_the_site_s_scripts_first() -> None:
    page = await PanelPage.open("template")
    try:
        scripts = script_urls(page.html)
        assert scripts[0] == "/static/bokehserve_django/recover.js"  # page recovery before BokehJS
        # BokehJS and Panel's script from the site's static files, as on Bokeh pages: not from
        # bokeh serve's static/js/ layout, which nginx serving STATIC_ROOT would not have.
        assert "/static/bokeh/js/bokeh.min.js" in scripts, scripts
        assert not [url for url in scripts if "bokeh/js/" in url and not url.startswith("/static/")], scripts
        # (Panel's templates add their own files as "./static/extensions/panel/...": those go
        # to views.bokeh_static, or to STATIC_URL where it is that same path.)
        assert any(url.startswith("/static/extensions/panel/panel.min.js") for url in scripts), scripts
        assert 'href="static/extensions/panel/images/apple-touch-icon.png"' in page.html  # Panel's base template
        # Component stylesheets come from Panel's own files on this server, as under panel serve.
        stylesheets = [
            sheet.url
            for model in page.document.models
            if "stylesheets" in model.properties()
            for sheet in model.stylesheets
            if isinstance(sheet, ImportedStyleSheet)
        ]
        assert stylesheets
        assert [url for url in stylesheets if "cdn.holoviz.org" in url or "://" in url] == []
    finally:
        await page.close()


def imported_stylesheets(document) -> list[str]:
    return [
        sheet.url
        for model in document.models
        if "stylesheets" in model.properties()
        for sheet in model.stylesheets
        if isinstance(sheet, ImportedStyleSheet)
    ]


async def test_an_embedded_panel_app_takes_panel_s_bundle_and_styles_from_this_server() -> None:
    page = await PanelPage.open_embedded("template", "http://testserver/template")
    try:
        # Panel's bundle (its models' own scripts), absolute: the embedding page is elsewhere.
        assert "http://testserver/static/extensions/panel/panel.min.js" in page.html
        assert "http://testserver/static/bokeh/js/bokeh.min.js" in page.html
        assert "cdn.holoviz.org" not in page.html
        stylesheets = imported_stylesheets(page.document)
        assert stylesheets
        # As Panel's own autoload handler gives them: on this server, in bokeh serve's layout
        # (views.bokeh_static), never on Panel's CDN (an offline embed would be unstyled).
        assert [url for url in stylesheets if not url.startswith("http://testserver/static/extensions/panel/")] == []
    finally:
        await page.close()


async def test_a_page_url_cannot_point_the_stylesheets_at_another_host() -> None:
    # bokeh-absolute-url counts only on autoload.js, which checks it: a link to a page with
    # one of its own must not load the page's styles from the link-maker's host.
    page = await PanelPage.open("template", "?bokeh-absolute-url=https://evil.example/template")
    try:
        stylesheets = imported_stylesheets(page.document)
        assert stylesheets
        assert [url for url in stylesheets if "evil.example" in url or "://" in url] == []
    finally:
        await page.close()


COMPONENT = "/components/tests.panel.apps.card_component/Card"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"{COMPONENT}/_stylesheets/card.css", 200),
        (f"{COMPONENT}/_stylesheets/card_component.py", 403),  # next to it, but not listed
        (f"{COMPONENT}/_stylesheets/../card.css", 403),
        (f"{COMPONENT}/_esm/card.css", 403),  # not an attribute that names files
        ("/components/tests.panel.apps.card_component/Nothing/_stylesheets/card.css", 404),
        ("/components/antigravity/Thing/_stylesheets/x.css", 404),  # never imported: not imported now
        ("/components/tests.panel.apps.card_component/Card", 400),
    ],
)
async def test_the_component_resources_route_serves_only_listed_files(path: str, status: int) -> None:
    import sys

    import tests.panel.apps.card_component  # noqa: F401  (as a session that rendered a Card would have)

    response = await AsyncClient().get(path)
    assert response.status_code == status, response
    if status == 200:
        assert b"rgb(10, 120, 200)" in b"".join(response.streaming_content)
    assert "antigravity" not in sys.modules


async def test_a_bokeh_app_keeps_bokeh_s_page(settings) -> None:
    from bokehserve_django import registry
    from tests.settings import TEST_APPS

    settings.BOKEHSERVE = {**settings.BOKEHSERVE, "APPS": {"echo": TEST_APPS / "echo.py"}}
    registry.reset()
    html = (await AsyncClient().get("/echo")).content.decode()
    assert "apple-touch-icon" not in html
    assert script_urls(html)[0] == "/static/bokehserve_django/recover.js"


async def test_the_global_loading_spinner_covers_panel_pages_until_they_render() -> None:
    from panel.config import config

    config.global_loading_spinner = True  # what runbokeh --global-loading-spinner sets
    try:
        page = await PanelPage.open("bind")
        try:
            assert re.search(r'<body class="pn-loading pn-\w+">', page.html), re.findall("<body[^>]*>", page.html)
        finally:
            await page.close()
    finally:
        config.global_loading_spinner = False

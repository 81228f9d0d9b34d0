"""Panel apps of every kind run under bokehserve_django as under ``panel serve``: widget changes
reach Python and the answers come back, onload and periodic callbacks fire."""

from __future__ import annotations

import pytest

pn = pytest.importorskip("panel")

from bokehserve_django import registry  # noqa: E402
from bokehserve_django.panel import is_panel_application  # noqa: E402
from tests.panel.helpers import PanelPage, has_text  # noqa: E402

pytestmark = pytest.mark.usefixtures("panel_apps")


async def test_pn_bind_sends_the_bound_function_s_new_output_back() -> None:
    from bokeh.models import TextInput

    page = await PanelPage.open("bind")
    try:
        assert has_text("Hello, world!")(page.document)
        await page.document_ready()
        await page.change(page.one(TextInput), "value", "Ada")
        await page.wait_for(has_text("Hello, Ada!"))
    finally:
        await page.close()


async def test_a_fast_list_template_s_sidebar_widget_drives_its_main_area() -> None:
    from bokeh.models import Slider

    page = await PanelPage.open("template")
    try:
        assert "Template app" in page.html  # the template's own page, with its title
        assert has_text("stars: xxx")(page.document)
        await page.document_ready()
        await page.change(page.one(Slider), "value", 5)
        await page.wait_for(has_text("stars: xxxxx"))
    finally:
        await page.close()


async def test_a_periodic_callback_runs_until_it_stops_itself() -> None:
    page = await PanelPage.open("periodic")
    try:
        await page.document_ready()
        await page.wait_for(has_text("ticks: 3"))
    finally:
        await page.close()


async def test_a_tabulator_selection_reaches_python() -> None:
    from panel.models.tabulator import DataTabulator

    page = await PanelPage.open("tabulator")
    try:
        await page.document_ready()
        await page.change(page.one(DataTabulator).source.selected, "indices", [0, 2])
        await page.wait_for(has_text("picked: Oslo, Pune"))
    finally:
        await page.close()


async def test_onload_callbacks_run_once_the_page_has_loaded() -> None:
    page = await PanelPage.open("onload")
    try:
        assert has_text("status: loading")(page.document)
        await page.document_ready()
        await page.wait_for(has_text("status: loaded"))
    finally:
        await page.close()


async def test_a_markdown_app_runs_its_code_blocks() -> None:
    page = await PanelPage.open("page")
    try:
        assert has_text("from the markdown app")(page.document)
        assert has_text("Some text between the code blocks")(page.document)
    finally:
        await page.close()


async def test_a_notebook_app_runs_its_cells() -> None:
    from bokeh.models import Slider

    page = await PanelPage.open("notebook")
    try:
        assert has_text("squared: 4")(page.document)
        await page.document_ready()
        await page.change(page.one(Slider), "value", 7)
        await page.wait_for(has_text("squared: 49"))
    finally:
        await page.close()


async def test_a_function_named_in_settings_builds_a_fresh_object_per_session() -> None:
    from bokeh.models import Select

    first, second = await PanelPage.open("function"), await PanelPage.open("function")
    try:
        await first.document_ready()
        await first.change(first.one(Select), "value", "pear")
        await first.wait_for(has_text("fruit: pear"))
        assert has_text("fruit: apple")(second.document)
    finally:
        await first.close()
        await second.close()


async def test_a_template_object_named_in_settings_is_served() -> None:
    page = await PanelPage.open("template_object")
    try:
        assert "Object app" in page.html
        assert has_text("a template object")(page.document)
    finally:
        await page.close()


def test_which_apps_panel_builds() -> None:
    apps = registry.registered_apps()
    assert all(entry.load_error is None for entry in apps.values()), {
        name: entry.load_error.details for name, entry in apps.items() if entry.load_error
    }
    assert all(is_panel_application(entry.application) for entry in apps.values())

"""Which apps are Panel apps (bokehserve_django/panel/__init__.py, docs/panel.md): decided
without importing panel, so these run whether or not it is installed."""

from __future__ import annotations

import json

import pytest

from bokehserve_django.panel import is_panel_spec


def write(path, text: str):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("source", "is_panel"),
    [
        ("import panel as pn\npn.panel('x').servable()\n", True),
        ("from panel.widgets import Button\n", True),
        ("def build():\n    import panel\n", True),  # an indented import counts too
        ("import panelist\n", False),
        ("# import panel, one day\nfrom bokeh.io import curdoc\n", False),
        ("s = 'import panel'\n", False),
    ],
)
def test_a_script_is_a_panel_app_when_a_line_imports_panel(tmp_path, source, is_panel) -> None:
    assert is_panel_spec(write(tmp_path / "app.py", source)) is is_panel
    assert is_panel_spec(str(tmp_path / "app.py")) is is_panel  # paths as strings alike


def test_markdown_files_are_panel_apps(tmp_path) -> None:
    assert is_panel_spec(write(tmp_path / "report.md", "# Report\n"))


def test_a_directory_app_follows_its_main_py(tmp_path) -> None:
    write(tmp_path / "main.py", "import panel as pn\n")
    write(tmp_path / "helpers.py", "")
    assert is_panel_spec(tmp_path)
    write(tmp_path / "main.py", "from bokeh.io import curdoc\n")
    assert not is_panel_spec(tmp_path)


def test_a_notebook_counts_imports_in_code_cells_only(tmp_path) -> None:
    def notebook(cell_type: str):
        cells = [{"cell_type": cell_type, "metadata": {}, "source": ["import panel as pn\n"]}]
        return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})

    assert is_panel_spec(write(tmp_path / "code.ipynb", notebook("code")))
    assert not is_panel_spec(write(tmp_path / "text.ipynb", notebook("markdown")))
    assert not is_panel_spec(write(tmp_path / "broken.ipynb", "{not json"))


def test_functions_without_arguments_are_panel_apps_and_function_doc_is_bokeh_s() -> None:
    def panel_function():
        return None

    def with_defaults(title="x"):
        return None

    def bokeh_function(doc):
        return None

    async def async_bokeh_function(doc):
        return None

    assert is_panel_spec(panel_function)
    assert is_panel_spec(with_defaults)
    assert not is_panel_spec(bokeh_function)
    assert not is_panel_spec(async_bokeh_function)
    assert not is_panel_spec(object())


def test_panel_objects_are_panel_apps() -> None:
    pn = pytest.importorskip("panel")

    class Dashboard(pn.viewable.Viewer):
        def __panel__(self):
            return pn.Column()

    assert is_panel_spec(pn.pane.Markdown("x"))
    assert is_panel_spec(pn.template.FastListTemplate(title="t"))
    assert is_panel_spec(Dashboard())

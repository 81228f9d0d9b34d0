"""Without Panel installed, the project works as before and Panel apps say how to get Panel.

Each test runs a fresh interpreter in which ``import panel`` fails (``sys.modules["panel"] =
None``, as if it were not installed), so these run whether or not panel is installed here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HIDE_PANEL = "import sys; sys.modules['panel'] = None\n"
INSTALL_HINT = 'pip install "bokehserve-django[panel]"'


def run_without_panel(
    code: str, *, settings: str = "tests.settings", seconds: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", HIDE_PANEL + textwrap.dedent(code)],
        cwd=ROOT,
        env={"DJANGO_SETTINGS_MODULE": settings, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=seconds,
    )


def manage_py_without_panel(*args: str, settings: str, seconds: float = 120) -> subprocess.CompletedProcess[str]:
    return run_without_panel(
        f"""
        import runpy
        sys.argv = ["manage.py", *{list(args)!r}, "--settings", {settings!r}]
        runpy.run_path("manage.py", run_name="__main__")
        """,
        seconds=seconds,
    )


def test_every_module_but_the_panel_adapter_s_imports_without_panel() -> None:
    result = run_without_panel(
        """
        import json
        import django
        django.setup()
        from tests.module_imports import failing_imports
        failed = failing_imports()
        print(json.dumps({"failed": failed, "panel_imported": sys.modules.get("panel") is not None}))
        """
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["panel_imported"] is False
    assert set(report["failed"]) == {
        f"bokehserve_django.panel.{name}" for name in ("builder", "components", "pages", "users")
    }


def test_manage_py_check_passes_for_a_site_without_panel_apps() -> None:
    result = manage_py_without_panel("check", settings="tests.settings")
    assert result.returncode == 0, result.stderr
    assert "ERRORS:" not in result.stderr, result.stderr


def test_check_names_the_install_command_for_each_panel_app() -> None:
    result = manage_py_without_panel("check", settings="tests.panel.settings")
    assert result.returncode != 0
    for name in ("bind", "page", "notebook", "function", "template_object"):
        assert f"Bokeh application {name!r} failed to load" in result.stderr
    assert result.stderr.count(INSTALL_HINT) >= 5
    assert "'echo'" not in result.stderr  # the plain Bokeh app is fine


def test_a_bokeh_app_serves_and_a_panel_app_answers_with_the_install_command() -> None:
    result = run_without_panel(
        """
        import json
        import django
        django.setup()
        from django.test import Client
        client = Client()
        bokeh_page = client.get("/echo")
        panel_page = client.get("/page")
        component = client.get("/components/json/JSONDecoder/_stylesheets/x.css")
        print(json.dumps({
            "bokeh": [bokeh_page.status_code, '"token":' in bokeh_page.content.decode()],
            "panel": [panel_page.status_code, panel_page.content.decode()],
            "component": component.status_code,
        }))
        """,
        settings="tests.panel.settings",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["bokeh"] == [200, True]
    status, html = report["panel"]
    assert status == 500
    assert "pip install &quot;bokehserve-django[panel]&quot;" in html  # DEBUG is on: the reason is shown
    assert report["component"] == 404  # Panel's component route answers nothing without Panel


def test_runbokeh_refuses_panel_flags_with_the_install_command() -> None:
    # Refused before serving; were it not, the server would run until the timeout fails the test.
    result = manage_py_without_panel(
        "runbokeh", "--global-loading-spinner", "--port", "0", settings="tests.settings", seconds=60
    )
    assert result.returncode != 0
    assert f"--global-loading-spinner needs Panel, which is not installed; install it with {INSTALL_HINT}" in (
        result.stderr
    )

"""tests/settings.py with the Panel test apps next to a plain Bokeh app (for runbokeh processes and checks)."""

from pathlib import Path

from tests.settings import *  # noqa: F403
from tests.settings import BOKEHSERVE, TEST_APPS

PANEL_TEST_APPS = Path(__file__).resolve().parent / "apps"

#: The Panel apps of tests/panel, as a site would list them in BOKEHSERVE["APPS"].
PANEL_APPS = {
    "bind": PANEL_TEST_APPS / "bind.py",
    "template": PANEL_TEST_APPS / "template.py",
    "periodic": PANEL_TEST_APPS / "periodic.py",
    "tabulator": PANEL_TEST_APPS / "tabulator.py",
    "onload": PANEL_TEST_APPS / "onload.py",
    "request_info": PANEL_TEST_APPS / "request_info.py",
    "lifecycle": PANEL_TEST_APPS / "lifecycle.py",
    "page": PANEL_TEST_APPS / "page.md",
    "notebook": PANEL_TEST_APPS / "notebook.ipynb",
    "card": PANEL_TEST_APPS / "card.py",
    "whoami": {"app": PANEL_TEST_APPS / "whoami.py", "access": "login"},
    "function": "tests.panel.apps.objects:dashboard",
    "template_object": "tests.panel.apps.objects:shared_template",
}

BOKEHSERVE = {**BOKEHSERVE, "APPS": {"echo": TEST_APPS / "echo.py", **PANEL_APPS}}

ROOT_URLCONF = "tests.panel.urls"
LOGIN_URL = "/accounts/login/"

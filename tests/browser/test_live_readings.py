"""The demo's live model plot: a Reading saved through a Django view appears at once in a
`live` plot open in another browser page (post_save -> broadcast -> next-tick callback)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.browser.helpers import PageWatcher, model_js
from tests.live import ROOT, LiveServer

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[LiveServer]:
    """The demo site on its own migrated SQLite database, with two readings in it."""
    database = tmp_path_factory.mktemp("demo-db") / "demo.sqlite3"
    env = {**os.environ, "DEMO_DB_PATH": str(database), "DJANGO_SETTINGS_MODULE": "demo_project.settings"}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120)
    seed = "from demo_project.demo.models import Reading; [Reading.objects.create(value=v) for v in (1.5, 2.5)]"
    subprocess.run([sys.executable, "manage.py", "shell", "-c", seed], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120)
    server = LiveServer(settings="demo_project.settings", env={"DEMO_DB_PATH": str(database)})
    yield server
    server.stop()


def test_a_reading_saved_in_a_django_view_reaches_an_open_live_plot(browser, live) -> None:
    viewer_context, editor_context = browser.new_context(), browser.new_context()
    try:
        viewer = viewer_context.new_page()
        watch = PageWatcher(viewer, server_log=lambda: live.log)
        watch.open(live.url + "/live")
        assert viewer.evaluate(f"{model_js('count')}.text") == "readings: 2"  # from the ORM, in app code

        # Another browser saves a reading through the CSRF-protected form.
        editor = editor_context.new_page()
        editor.goto(live.url + "/django/readings/")
        editor.fill("#value", "7.25")
        editor.click("#add")
        editor.wait_for_selector("#added")

        viewer.wait_for_function(f"() => {model_js('count')}.text === 'readings: 3'", timeout=10_000)
        values = viewer.evaluate(f"Array.from({model_js('readings')}.data['value'])")
        assert values[-1] == 7.25
        watch.assert_clean()
    finally:
        # A page left open keeps its session live, and the server's stop would wait out its
        # whole drain for it.
        viewer_context.close()
        editor_context.close()


def test_the_form_refuses_a_post_without_csrf_token(live) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(live.url + "/django/readings/", data=b"value=1", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 403
    assert re.search(r"CSRF", info.value.read().decode())

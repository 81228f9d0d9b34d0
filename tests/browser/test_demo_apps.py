"""Each demo app, served by runbokeh, in headless Chromium: BokehJS renders without errors and a
Python callback round trip works, per the test contracts in demo_project/bokeh_apps/README.md.
Also the Django page that embeds the sliders app with {% bokeh_app %} (autoload.js).
"""

from __future__ import annotations

import pytest

from tests.browser.helpers import PageWatcher, model_js

pytestmark = pytest.mark.browser


def test_button(live, watch: PageWatcher) -> None:
    watch.open(live.url + "/button")
    assert watch.page.title() == "Button demo"
    assert watch.get("output", "text") == "clicks: 0"

    watch.click("button")
    watch.wait_prop("output", "text", "clicks: 1")
    assert watch.page.evaluate(f"() => {model_js('clicks_source')}.data.text") == ["1"]

    # The DOM way too: Playwright's CSS locators pierce Bokeh's open shadow roots.
    watch.page.locator("button", has_text="Press Me").click()
    watch.wait_prop("output", "text", "clicks: 2")
    data = watch.page.evaluate(f"() => {model_js('clicks_source')}.data")
    assert (list(data["x"]), list(data["y"]), data["text"]) == ([1, 2], [1, 2], ["1", "2"])

    watch.set("text_input", "value", "abc Def")
    watch.wait_prop("upper", "text", "ABC DEF")
    watch.assert_clean()


def test_thread(live, watch: PageWatcher) -> None:
    watch.open(live.url + "/thread")
    # Ticks arrive from the per-session thread through add_next_tick_callback.
    watch.wait_js(f"() => Number({model_js('thread_count')}.text.split(': ')[1]) >= 5",
                  what="thread_count to reach 5")
    text, length = watch.page.evaluate(
        f"() => [{model_js('thread_count')}.text, {model_js('thread_source')}.data.x.length]")
    assert text == f"thread ticks: {length}"
    periodic = watch.page.evaluate(f"() => Number({model_js('periodic_count')}.text.split(': ')[1])")
    watch.wait_js(f"(before) => Number({model_js('periodic_count')}.text.split(': ')[1]) > before",
                  arg=periodic, what="periodic_count to increase")

    def ticks() -> int:
        return int(watch.get("thread_count", "text").split(": ")[1])

    watch.set("pause", "active", True)
    watch.wait_prop("status", "text", "status: paused")
    paused_at = ticks()
    watch.page.wait_for_timeout(1000)  # 5 thread periods
    assert ticks() - paused_at <= 1, "thread_count kept changing while paused"

    watch.set("pause", "active", False)
    watch.wait_prop("status", "text", "status: running")
    watch.wait_js(f"(before) => Number({model_js('thread_count')}.text.split(': ')[1]) > before + 1",
                  arg=ticks(), what="thread ticks to resume")
    watch.assert_clean()


def test_unlocked(live, watch: PageWatcher) -> None:
    watch.open(live.url + "/unlocked")
    assert watch.get("status", "text") == "status: idle"
    assert watch.get("result", "text") == "result: none"

    def heartbeat() -> int:
        return int(watch.get("heartbeat", "text").split(": ")[1])

    watch.click("button")
    watch.wait_prop("status", "text", "status: job 1 running", timeout=2000)
    before = heartbeat()
    watch.wait_prop("result", "text", "result: job 1 -> 1", timeout=5000)
    watch.wait_prop("status", "text", "status: job 1 done")
    # 1 s of blocking work at a 100 ms heartbeat: about 10 beats unless the lock was held.
    assert heartbeat() - before >= 5, "heartbeat stalled: the document lock was held during the job"

    watch.click("button")
    watch.wait_prop("result", "text", "result: job 2 -> 4", timeout=5000)
    watch.wait_prop("status", "text", "status: job 2 done")
    watch.assert_clean()


def test_sliders_directory_app(live, watch: PageWatcher) -> None:
    watch.open(live.url + "/sliders?N=50", nroots=3)
    page = watch.page

    # Template: title, template variables, the include, the named roots in their slots.
    assert page.title() == "Sliders demo"
    assert page.locator("#demo-heading").inner_text() == "Sine-wave sliders"
    assert page.locator("#demo-intro").inner_text().strip()
    for slot in ("#controls-slot", "#plot-slot", "#request-slot"):
        assert page.locator(f"{slot} [data-root-id]").count() == 1, f"{slot} holds no Bokeh root"
    assert page.locator(".demo-footer").inner_text().endswith("(50 points).")

    # Static files of the directory app, through {{ static_root }}.
    watch.wait_js("() => document.querySelector('#demo-logo').complete", what="the logo to load")
    assert page.evaluate("() => document.querySelector('#demo-logo').naturalWidth") == 96
    assert page.evaluate(
        "() => getComputedStyle(document.querySelector('.demo-header')).borderBottomColor") == "rgb(31, 78, 121)"
    assert watch.status_of("/sliders/static/css/sliders.css") == 200
    assert watch.status_of("/sliders/static/images/logo.png") == 200

    # Request data, process_request's token payload, and the theme.
    assert watch.get("request_args", "text") == "query N=50; points=50"
    assert watch.get("token_info", "text") == "payload request_path=/sliders; query_n=50"
    assert watch.page.evaluate(f"() => {model_js('plot')}.background_fill_color") == "#fbfaf5"
    assert watch.page.evaluate(f"() => {model_js('source')}.data.x.length") == 50

    # Round trips.
    watch.set("amplitude", "value", 2)
    watch.wait_prop("summary", "text", "amplitude=2.00 offset=0.00 phase=0.00 freq=1.00 points=50")
    max_y = watch.page.evaluate(f"() => Math.max(...{model_js('source')}.data.y)")
    assert 1.99 < max_y <= 2.0

    watch.set("title_input", "value", "hello sliders")
    watch.wait_js(f"() => {model_js('plot')}.title.text === 'hello sliders'", what="plot.title.text")

    watch.screenshot("sliders.png")
    watch.assert_clean()


def test_sliders_query_html_is_text(live, watch: PageWatcher) -> None:
    watch.open(live.url + "/sliders?N=<b>bold</b>", nroots=3)
    assert watch.get("request_args", "text") == "query N=<b>bold</b>; points=200"
    assert watch.page.locator("b", has_text="bold").count() == 0, "?N= was rendered as HTML"
    assert watch.page.locator(".demo-footer").inner_text().endswith("(200 points).")
    watch.assert_clean()


def test_template_vars(live, watch: PageWatcher) -> None:
    watch.open(live.url + "/template_vars", nroots=2)
    page = watch.page
    assert page.title() == "Template variables demo"
    assert page.locator("#doc-title").inner_text() == "Template variables demo"
    assert page.locator("#greeting").inner_text() == "Hello from curdoc().template_variables"
    assert page.locator("#colors li").all_inner_texts() == ["red", "green", "blue"]
    assert page.locator("#source-file").inner_text() == "Built by template_vars/main.py"
    for slot in ("#select-slot", "#selected-slot"):
        assert page.locator(f"{slot} [data-root-id]").count() == 1, f"{slot} holds no Bokeh root"

    assert watch.get("selected", "text") == "selected: red"
    watch.set("select", "value", "green")
    watch.wait_prop("selected", "text", "selected: green")
    page.locator("#select-slot select").select_option("blue")
    watch.wait_prop("selected", "text", "selected: blue")
    watch.assert_clean()


def test_django_embed_page(live, watch: PageWatcher) -> None:
    """/django/embed/ is a Django template with {% bokeh_app "sliders" %}: autoload.js, then a WebSocket."""
    watch.open(live.url + "/django/embed/", nroots=3)
    page = watch.page
    assert page.locator("h1").inner_text() == "Django page, Bokeh app inside"
    assert watch.status_of("/sliders/autoload.js") == 200
    # autoload.js renders the roots next to its <script> tag: the canvas and the widgets show.
    assert page.locator("canvas").first.is_visible()
    assert page.locator("input[type=text]").first.is_visible()
    assert watch.get("request_args", "text") == "query N=none; points=200"
    assert watch.page.evaluate(f"() => {model_js('plot')}.background_fill_color") == "#fbfaf5"

    watch.set("amplitude", "value", 1.5)
    watch.wait_prop("summary", "text", "amplitude=1.50 offset=0.00 phase=0.00 freq=1.00 points=200")
    watch.set("title_input", "value", "embedded")
    watch.wait_js(f"() => {model_js('plot')}.title.text === 'embedded'", what="plot.title.text")

    watch.screenshot("embed.png")
    watch.assert_clean()

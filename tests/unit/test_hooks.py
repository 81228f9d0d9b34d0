"""Hook adapters: sync hooks run in the app-code pool, async ones are awaited on the loop, in bokeh's order."""

from __future__ import annotations

import threading

import pytest
from bokeh.application import Application
from bokeh.application.handlers.lifecycle import LifecycleHandler
from bokeh.application.handlers.request_handler import RequestHandler

from bokehserve_django import hooks


@pytest.fixture(autouse=True)
def small_pool(settings):
    settings.BOKEHSERVE = {"APP_CODE_THREADS": 2, "APP_CODE_THREADS_PER_APP": 1, "APP_CODE_TIMEOUT": 5}


def lifecycle(**functions) -> LifecycleHandler:
    handler = LifecycleHandler()
    for name, function in functions.items():
        setattr(handler, f"_{name}", function)
    return handler


async def test_sync_hooks_run_in_the_pool_and_async_ones_on_the_loop() -> None:
    seen: list[tuple[str, str]] = []
    loop_thread = threading.current_thread().name

    def on_session_created(session_context):
        seen.append(("created", threading.current_thread().name))

    async def on_session_destroyed(session_context):
        seen.append(("destroyed", threading.current_thread().name))

    def on_server_loaded(server_context):
        seen.append(("loaded", threading.current_thread().name))

    async def on_server_unloaded(server_context):
        seen.append(("unloaded", threading.current_thread().name))

    application = Application(lifecycle(on_session_created=on_session_created, on_session_destroyed=on_session_destroyed,
                                        on_server_loaded=on_server_loaded, on_server_unloaded=on_server_unloaded))
    hooks.install(application, "adapted")
    await hooks.run("adapted", "on_server_loaded", application.on_server_loaded, None)
    await application.on_session_created(None)
    await application.on_session_destroyed(None)
    await hooks.run("adapted", "on_server_unloaded", application.on_server_unloaded, None)
    assert [event for event, _ in seen] == ["loaded", "created", "destroyed", "unloaded"]
    threads = dict(seen)
    assert threads["loaded"].startswith("bokeh-app") and threads["created"].startswith("bokeh-app")
    # An async hook is awaited on the loop (the unloaded one from a pool thread, which waits for it).
    assert threads["destroyed"] == loop_thread and threads["unloaded"] == loop_thread


async def test_an_async_process_request_returns_its_dict() -> None:
    handler = RequestHandler()

    async def process_request(request):
        return {"seen": request}

    handler._process_request = process_request
    application = Application(handler)
    hooks.install(application, "requests")
    assert await hooks.run("requests", "process_request", application.process_request, "r") == {"seen": "r"}


async def test_a_handler_that_overrides_a_hook_method_keeps_it() -> None:
    calls: list[str] = []

    class OwnHooks(LifecycleHandler):
        async def on_session_created(self, session_context):
            calls.append(threading.current_thread().name)

    application = Application(OwnHooks())
    hooks.install(application, "own")
    await application.on_session_created(None)
    assert calls == [threading.current_thread().name]


async def test_a_failing_hook_raises_to_its_caller_with_its_traceback() -> None:
    def on_session_created(session_context):
        raise LookupError("no such record")

    application = Application(lifecycle(on_session_created=on_session_created))
    hooks.install(application, "failing")
    with pytest.raises(LookupError, match="no such record") as raised:
        await application.on_session_created(None)
    assert raised.traceback[-1].name == "on_session_created"

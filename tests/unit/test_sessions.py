"""Session lifecycle: hooks in order, reaping of unused sessions, shutdown, one creation per id."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from bokehserve_django import registry
from bokehserve_django.sessions import SessionRequest, runtime

APPS = Path(__file__).resolve().parents[1] / "apps"


@pytest.fixture
def hook_log(tmp_path, monkeypatch, settings):
    log = tmp_path / "hooks.log"
    monkeypatch.setenv("BOKEHSERVE_TEST_HOOK_LOG", str(log))
    settings.BOKEHSERVE = {
        "APPS": {
            "hooks": APPS / "hooks",
            "echo": APPS / "echo.py",
            "raises": APPS / "broken" / "raises.py",
            "destroy_order": APPS / "destroy_order.py",
        },
        "CHECK_UNUSED_SESSIONS": 100,
        "UNUSED_SESSION_LIFETIME": 300,
    }
    registry.reset()
    yield log
    registry.reset()


@pytest.fixture
async def started(hook_log):
    runtime.ensure_started()
    yield runtime
    await runtime.shutdown()


def events(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    return [(line.split()[0], line.split()[2]) for line in log.read_text().splitlines()]


async def create(app: str, session_id: str, **arguments: list[bytes]):
    request = SessionRequest(arguments=dict(arguments))
    return await runtime.app(app).get_or_create(session_id, request, "token", {"seen_path": "/x"})


class TestLifecycle:
    async def test_hooks_fire_in_order_and_unused_session_is_destroyed_in_time(self, started, hook_log) -> None:
        session = await create("hooks", "s1", a=[b"1"])
        assert session.document.get_model_by_name("info").text == "args=['a'] seen_path=/x"
        assert events(hook_log) == [("on_server_loaded", "-"), ("on_session_created", "s1")]
        for _ in range(40):  # lifetime 300 ms, checked every 100 ms: gone well within 2 s
            await asyncio.sleep(0.05)
            if "s1" not in runtime.app("hooks"):
                break
        assert "s1" not in runtime.app("hooks")
        assert session.destroyed
        for _ in range(40):  # the hooks run in the app-code pool, just after the session left the table
            if len(events(hook_log)) >= 4:
                break
            await asyncio.sleep(0.05)
        # bokeh serve's order: the app's hook, then callbacks registered on the Document.
        assert events(hook_log)[2:] == [("on_session_destroyed", "s1"), ("document_on_session_destroyed", "s1")]

    async def test_shutdown_destroys_sessions_then_unloads(self, hook_log, settings) -> None:
        settings.BOKEHSERVE = {**settings.BOKEHSERVE, "UNUSED_SESSION_LIFETIME": 60_000}
        runtime.ensure_started()
        await create("hooks", "s2")
        await runtime.shutdown()
        assert [e for e, _ in events(hook_log)] == [
            "on_server_loaded",
            "on_session_created",
            "on_session_destroyed",
            "document_on_session_destroyed",
            "on_server_unloaded",
        ]

    async def test_connected_session_is_not_reaped(self, started) -> None:
        from bokehserve_django.sessions import SessionConnection

        class NullTransport:
            async def send_frames(self, frames):
                pass

            async def close_connection(self, code, reason):
                pass

        session = await create("echo", "s3")
        connection = SessionConnection(session, NullTransport())
        await asyncio.sleep(0.6)
        assert "s3" in runtime.app("echo")
        connection.detach()
        for _ in range(40):
            await asyncio.sleep(0.05)
            if "s3" not in runtime.app("echo"):
                break
        assert "s3" not in runtime.app("echo")

    async def test_concurrent_requests_create_one_session(self, started, hook_log) -> None:
        sessions = await asyncio.gather(*(create("hooks", "same") for _ in range(5)))
        assert len({id(s) for s in sessions}) == 1
        assert [e for e, _ in events(hook_log)].count("on_session_created") == 1

    async def test_destroy_drops_the_app_module(self, started) -> None:
        session = await create("echo", "s4")
        modules = [m.__name__ for m in session.document.modules._modules]
        assert modules and all(name in sys.modules for name in modules)
        await runtime.app("echo").discard(session)
        assert not any(name in sys.modules for name in modules)

    async def test_destroy_hooks_run_after_the_document_is_destroyed_with_module_globals_intact(
        self, started, hook_log
    ) -> None:
        session = await create("destroy_order", "s7")
        modules = [m.__name__ for m in session.document.modules._modules]
        await runtime.app("destroy_order").discard(session)
        # bokeh's order (the document first, then the hooks), but the module is cleared last.
        assert hook_log.read_text().splitlines()[-1] == "destroyed=True roots-gone=True globals-intact"
        assert not any(name in sys.modules for name in modules)

    async def test_app_that_raises_gives_load_error_and_keeps_no_session(self, started) -> None:
        from bokehserve_django.exceptions import AppLoadError

        with pytest.raises(AppLoadError) as info:
            await create("raises", "s5")
        assert "broken on purpose" in info.value.details
        assert "s5" not in runtime.app("raises")
        # Other apps are unaffected.
        assert (await create("echo", "s6")).document.roots


class TestProcessRequestShortcut:
    """Apps whose handlers keep bokeh's empty process_request skip the trip to the pool."""

    def test_which_apps_have_a_process_request_of_their_own(self) -> None:
        from bokeh.application import Application
        from bokeh.application.handlers import DirectoryHandler, FunctionHandler, ScriptHandler

        from bokehserve_django.sessions import _has_process_request

        assert not _has_process_request(Application(ScriptHandler(filename=str(APPS / "echo.py"))))
        assert not _has_process_request(Application(FunctionHandler(lambda doc: None)))
        assert _has_process_request(Application(DirectoryHandler(filename=str(APPS / "guide_layout"))))

        handler = FunctionHandler(lambda doc: None)
        handler.process_request = lambda request: {"set": "on the instance"}
        assert _has_process_request(Application(handler))

        class OwnApplication(Application):
            def process_request(self, request):
                return {"from": "the application"}

        assert _has_process_request(OwnApplication(FunctionHandler(lambda doc: None)))

    async def test_an_app_without_one_gets_an_empty_dict_and_no_pool_thread(self, started, monkeypatch) -> None:
        from bokehserve_django import hooks

        async def no_pool(*args, **kwargs):
            raise AssertionError("process_request went to the app-code pool")

        monkeypatch.setattr(hooks, "run", no_pool)
        assert await runtime.app("echo").process_request(SessionRequest(), "some-session") == {}

    async def test_an_app_with_one_still_runs_it(self, started, monkeypatch) -> None:
        from bokehserve_django import hooks

        ran: list[str] = []

        async def recording_pool(app_name, what, func, *args, **kwargs):
            ran.append(f"{app_name}: {what}")
            return {"from": "the pool"}

        monkeypatch.setattr(hooks, "run", recording_pool)
        monkeypatch.setattr(runtime.app("echo").application, "process_request", lambda request: {})
        assert await runtime.app("echo").process_request(SessionRequest(), "some-session") == {"from": "the pool"}
        assert ran == ["echo: process_request"]

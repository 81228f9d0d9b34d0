"""runbokeh: flags -> settings overrides -> daphne Server kwargs, without opening a socket."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from bokehserve_django import registry
from bokehserve_django.conf import OVERRIDES_ENV, bokeh_settings
from bokehserve_django.management.commands import runbokeh
from bokehserve_django.server import BokehDaphneServer

APPS = Path(__file__).resolve().parents[1] / "apps"


class RecordingServer:
    """Stands in for daphne's Server (as daphne's test_cli does): records what it was given."""

    instances: list[RecordingServer] = []
    abort_start = False  # daphne's CLI reads it after run()

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs
        RecordingServer.instances.append(self)

    def run(self) -> None:
        pass


@pytest.fixture
def recorder(monkeypatch):
    RecordingServer.instances = []
    monkeypatch.setattr(runbokeh.Command, "server_cls", RecordingServer)
    monkeypatch.delenv(OVERRIDES_ENV, raising=False)
    yield RecordingServer
    os.environ.pop(OVERRIDES_ENV, None)
    bokeh_settings.reload()
    registry.reset()


def run(*args: str) -> dict:
    call_command("runbokeh", *args)
    return RecordingServer.instances[-1].kwargs


class TestRunbokeh:
    def test_defaults_match_bokeh_serve(self, recorder) -> None:
        kwargs = run(str(APPS / "echo.py"))
        assert kwargs["endpoints"] == ["tcp:port=5006:interface=127.0.0.1"]
        assert kwargs["websocket_max_message_size"] == 20 * 1024 * 1024
        assert kwargs["websocket_max_frame_size"] == 20 * 1024 * 1024
        assert kwargs["websocket_timeout"] == -1
        assert kwargs["ping_interval"] == 37
        assert "echo" in registry.registered_apps()
        assert bokeh_settings.ALLOWED_ORIGINS[-2:] == ["localhost:5006", "127.0.0.1:5006"]

    def test_flags_become_settings(self, recorder) -> None:
        kwargs = run(
            str(APPS / "echo.py"), "--port", "5123", "--allow-websocket-origin", "example.com",
            "--unused-session-lifetime", "500", "--check-unused-sessions", "100", "--keep-alive", "0",
            "--websocket-max-message-size", "1000", "--session-token-expiration", "60",
            "--exclude-cookies", "a,b", "--prefix", "bokeh", "--disable-index-redirect",
        )
        assert kwargs["endpoints"] == ["tcp:port=5123:interface=127.0.0.1"]
        assert kwargs["websocket_max_message_size"] == 1000
        assert kwargs["ping_interval"] > 10**6  # keep-alive 0: no pings
        overrides = json.loads(os.environ[OVERRIDES_ENV])
        assert overrides["UNUSED_SESSION_LIFETIME"] == 500
        assert overrides["EXCLUDE_COOKIES"] == ["a", "b"]
        assert bokeh_settings.ALLOWED_ORIGINS[-1] == "example.com"
        assert bokeh_settings.SESSION_TOKEN_EXPIRATION == 60
        assert bokeh_settings.prefix == "bokeh"
        assert bokeh_settings.DISABLE_INDEX_REDIRECT is True

    def test_unix_socket_and_args(self, recorder) -> None:
        kwargs = run(str(APPS / "echo.py"), "--unix-socket", "/tmp/bokeh.sock", "--args", "--foo", "1")
        assert kwargs["endpoints"] == ["unix:/tmp/bokeh.sock"]
        assert registry.registered_apps()["echo"].argv == ["--foo", "1"]

    def test_glob(self, recorder) -> None:
        run(str(APPS / "e*.py"), "--glob")
        assert "echo" in registry.registered_apps()

    def test_missing_app_path_is_a_clear_error(self, recorder) -> None:
        with pytest.raises(CommandError, match="does not exist"):
            run("/no/such/app.py")

    def test_default_server_is_bokehs_daphne(self) -> None:
        assert runbokeh.Command.server_cls is None  # resolved to BokehDaphneServer at run time
        assert issubclass(BokehDaphneServer, __import__("daphne.server").server.Server)


class TestNumProcs:
    def test_refused_with_the_in_memory_layer(self, recorder) -> None:
        with pytest.raises(CommandError, match="needs a channel layer shared by the processes"):
            run(str(APPS / "echo.py"), "--num-procs", "2")

    def test_worker_argv_drops_the_option(self) -> None:
        argv = ["manage.py", "runbokeh", "a.py", "--num-procs", "2", "--port", "2", "--num-procs=3"]
        assert runbokeh._without_option(argv, "--num-procs") == ["manage.py", "runbokeh", "a.py", "--port", "2"]

    def test_auth_module_is_refused_with_what_to_use(self, recorder) -> None:
        with pytest.raises(CommandError, match="access policy"):
            run(str(APPS / "echo.py"), "--auth-module", "auth.py")

    def test_session_ids_modes(self, recorder) -> None:
        run(str(APPS / "echo.py"), "--session-ids", "external-signed")
        assert bokeh_settings.sign_sessions is True
        assert bokeh_settings.GENERATE_SESSION_IDS is False


class TestDrainTimeout:
    """--drain-timeout: the DRAIN_TIMEOUT override that SIGTERM's drain reads (BokehDaphneServer)."""

    def test_runbokeh_flag_becomes_the_setting(self, recorder) -> None:
        run(str(APPS / "echo.py"), "--drain-timeout", "3")
        assert json.loads(os.environ[OVERRIDES_ENV])["DRAIN_TIMEOUT"] == 3
        assert bokeh_settings.DRAIN_TIMEOUT == 3

    def test_runbokeh_without_the_flag_keeps_the_setting(self, recorder) -> None:
        run(str(APPS / "echo.py"))
        assert "DRAIN_TIMEOUT" not in json.loads(os.environ[OVERRIDES_ENV])
        assert bokeh_settings.DRAIN_TIMEOUT == 10

    @pytest.mark.parametrize("value", ["-1", "soon", "1.5"])
    def test_runbokeh_refuses_what_is_not_whole_seconds(self, recorder, value) -> None:
        with pytest.raises(CommandError, match="--drain-timeout"):
            run(str(APPS / "echo.py"), "--drain-timeout", value)

    def test_daphne_module_flag_becomes_the_setting(self, monkeypatch) -> None:
        from bokehserve_django.daphne import BokehCommandLineInterface

        monkeypatch.delenv(OVERRIDES_ENV, raising=False)
        cli = BokehCommandLineInterface()
        cli.server_class = RecordingServer
        RecordingServer.instances = []
        cli.run(["tests.asgi:application", "--port", "5123", "--drain-timeout", "4"])
        assert RecordingServer.instances[-1].kwargs["endpoints"] == ["tcp:port=5123:interface=127.0.0.1"]
        assert json.loads(os.environ[OVERRIDES_ENV]) == {"DRAIN_TIMEOUT": 4}
        bokeh_settings.reload()
        assert bokeh_settings.DRAIN_TIMEOUT == 4

    def test_daphne_module_keeps_other_overrides(self, monkeypatch) -> None:
        from bokehserve_django.daphne import BokehCommandLineInterface

        monkeypatch.setenv(OVERRIDES_ENV, json.dumps({"PREFIX": "bokeh"}))
        cli = BokehCommandLineInterface()
        cli.server_class = RecordingServer
        cli.run(["tests.asgi:application", "--drain-timeout", "0"])
        assert json.loads(os.environ[OVERRIDES_ENV]) == {"PREFIX": "bokeh", "DRAIN_TIMEOUT": 0}

    def test_help_says_what_it_does(self, capsys) -> None:
        from bokehserve_django.daphne import BokehCommandLineInterface

        with pytest.raises(SystemExit):
            BokehCommandLineInterface().parser.parse_args(["--help"])
        help_text = " ".join(capsys.readouterr().out.split())
        assert "--drain-timeout SECONDS" in help_text
        assert "wait up to this many seconds for live sessions to end" in help_text


class TestCommandLineAppsAndSettingsApps:
    """A command-line app may not silently take the name of a different app from BOKEHSERVE["APPS"]."""

    def test_a_different_app_under_a_settings_name_is_refused_naming_both(self, recorder, settings, tmp_path) -> None:
        other = tmp_path / "echo.py"
        other.write_text("from bokeh.io import curdoc\n")
        with pytest.raises(CommandError) as info:
            run(str(other))
        message = str(info.value)
        assert "Two apps would be served at /echo" in message
        assert "BOKEHSERVE['APPS']['echo'] in settings" in message and str(APPS / "echo.py") in message
        assert f"the command-line app {str(other)!r}" in message
        assert RecordingServer.instances == []

    def test_the_same_path_keeps_the_settings_access_policy(self, recorder, settings) -> None:
        settings.BOKEHSERVE = {"APPS": {"echo": {"app": APPS / "echo.py", "access": "login", "args": ["--a"]}}}
        run(str(APPS / "echo.py"))
        entry = registry.registered_apps()["echo"]
        assert not entry.access.is_public
        assert entry.argv == ["--a"]

    def test_the_same_path_with_args_takes_the_command_line_args(self, recorder, settings) -> None:
        settings.BOKEHSERVE = {"APPS": {"echo": {"app": APPS / "echo.py", "access": "login", "args": ["--a"]}}}
        run(str(APPS / "echo.py"), "--args", "--b")
        entry = registry.registered_apps()["echo"]
        assert not entry.access.is_public
        assert entry.argv == ["--b"]

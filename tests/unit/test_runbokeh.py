"""runbokeh: flags -> settings overrides -> daphne Server kwargs, without opening a socket."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from bokehserve_django import registry
from bokehserve_django.conf import OVERRIDES_ENV, bokeh_settings
from bokehserve_django.management.commands import runbokeh
from bokehserve_django.server import BokehDaphneServer, apply_xheaders
from tests.cluster.helpers import self_signed_certificate

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


#: The BOKEH_* variables that runbokeh reads through bokeh's settings.
BOKEH_VARIABLES = (
    "BOKEH_SSL_CERTFILE", "BOKEH_SSL_KEYFILE", "BOKEH_SSL_PASSWORD", "BOKEH_XSRF_COOKIES", "BOKEH_COOKIE_SECRET",
    "BOKEH_ICO_PATH",
)


@pytest.fixture
def recorder(monkeypatch):
    from bokeh.settings import settings as bokeh_env_settings

    RecordingServer.instances = []
    monkeypatch.setattr(runbokeh.Command, "server_cls", RecordingServer)
    monkeypatch.delenv(OVERRIDES_ENV, raising=False)
    for name in BOKEH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    yield RecordingServer
    os.environ.pop(OVERRIDES_ENV, None)
    # --ico-path and --use-config set bokeh's process-wide settings, as they do in a real run.
    bokeh_env_settings.ico_path.unset_value()
    bokeh_env_settings._config_override = {}
    for name in ("bokehserve_django", "bokeh"):
        log = logging.getLogger(name)
        for handler in [h for h in log.handlers if getattr(h, "_runbokeh", False)]:
            log.removeHandler(handler)
            handler.close()
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

    def test_default_server_is_bokehs_daphne(self, recorder, monkeypatch) -> None:
        """A real run (no server_cls swapped in) builds and runs a BokehDaphneServer."""
        import daphne.server

        from bokehserve_django import server as server_module

        started: list[BokehDaphneServer] = []

        class RecordingBokehServer(BokehDaphneServer):
            def run(self) -> None:  # no socket: record instead of listening
                started.append(self)

        def refuse(self) -> None:  # any other daphne Server would listen on a real port
            raise AssertionError(f"runbokeh ran {type(self).__qualname__}, not BokehDaphneServer")

        monkeypatch.setattr(runbokeh.Command, "server_cls", None)  # the default, undoing recorder's
        monkeypatch.setattr(daphne.server.Server, "run", refuse)
        # inner_run imports the class from bokehserve_django.server at run time.
        monkeypatch.setattr(server_module, "BokehDaphneServer", RecordingBokehServer)
        call_command("runbokeh", str(APPS / "echo.py"), "--use-xheaders", "--port", "5123")
        assert RecordingServer.instances == []
        assert len(started) == 1
        server = started[0]
        assert type(server) is RecordingBokehServer
        assert server.endpoints == ["tcp:port=5123:interface=127.0.0.1"]
        assert server.use_xheaders is True  # BokehDaphneServer's own option reached it


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


class TestLogFrequencies:
    """--stats-log-frequency / --mem-log-frequency take bokeh serve's milliseconds; the settings are seconds."""

    @pytest.mark.parametrize(("flag", "key"), [("--stats-log-frequency", "STATS_LOG_FREQUENCY"),
                                               ("--mem-log-frequency", "MEM_LOG_FREQUENCY")])
    @pytest.mark.parametrize(("milliseconds", "seconds"), [("15000", 15), ("1500", 2), ("200", 1), ("0", 0)])
    def test_milliseconds_become_whole_seconds(self, recorder, flag, key, milliseconds, seconds) -> None:
        run(str(APPS / "echo.py"), flag, milliseconds)
        assert json.loads(os.environ[OVERRIDES_ENV])[key] == seconds

    def test_a_negative_period_is_refused(self, recorder) -> None:
        with pytest.raises(CommandError, match="--stats-log-frequency must be a number of milliseconds"):
            run(str(APPS / "echo.py"), "--stats-log-frequency", "-5")


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


class TestEveryBokehServeFlag:
    def test_none_is_an_unrecognized_argument(self) -> None:
        """Each of bokeh serve's flags is known: it works, or is refused with what to do instead."""
        from bokeh.command.subcommands.serve import Serve

        parser = runbokeh.Command().create_parser("manage.py", "runbokeh")
        known = set(parser._option_string_actions)
        theirs = {name for names, _ in Serve.args for name in ((names,) if isinstance(names, str) else names)
                  if name.startswith("--")}
        assert sorted(theirs - known) == []

    def test_help_lists_them(self, capsys) -> None:
        with pytest.raises(SystemExit):
            runbokeh.Command().create_parser("manage.py", "runbokeh").parse_args(["--help"])
        help_text = " ".join(capsys.readouterr().out.split())
        assert "--ssl-certfile CERTFILE" in help_text
        assert "(default '%(asctime)s %(levelname)s %(name)s: %(message)s')" in help_text

    def test_each_flag_is_in_the_settings_docs(self) -> None:
        import argparse

        parser = argparse.ArgumentParser()
        runbokeh.Command().add_arguments(parser)
        docs = (Path(__file__).resolve().parents[2] / "docs" / "settings.md").read_text()
        flags = {name for action in parser._actions if action.help != argparse.SUPPRESS
                 for name in action.option_strings if name.startswith("--")}
        flags |= {"--auth-module", "--cookie-secret"}  # hidden from --help, refused with a message
        flags.discard("--help")
        assert sorted(flag for flag in flags if f"`{flag}" not in docs) == []


@pytest.fixture
def certificate(tmp_path) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path)


def encrypted_copy(key: Path, password: str) -> Path:
    target = key.with_name("encrypted-key.pem")
    subprocess.run(["openssl", "pkey", "-in", str(key), "-aes256", "-passout", f"pass:{password}", "-out", str(target)],
                   check=True, capture_output=True, timeout=30)
    return target


class TestTLS:
    """--ssl-certfile/--ssl-keyfile and BOKEH_SSL_*: the server gets a TLS context; URLs are https."""

    def test_flags_give_a_tls_context_and_https_urls(self, recorder, certificate, caplog) -> None:
        from twisted.internet.ssl import CertificateOptions

        cert, key = certificate
        with caplog.at_level(logging.INFO, "bokehserve_django"):
            kwargs = run(str(APPS / "echo.py"), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
        assert isinstance(kwargs["tls_context_factory"], CertificateOptions)
        # The endpoint stays TCP: BokehDaphneServer wraps its factory in TLS (so fd: works too).
        assert kwargs["endpoints"] == ["tcp:port=5006:interface=127.0.0.1"]
        assert "https://localhost:5006/echo" in caplog.text
        assert "with TLS (HTTPS and WSS)" in caplog.text

    def test_without_the_flags_there_is_no_tls(self, recorder) -> None:
        assert "tls_context_factory" not in run(str(APPS / "echo.py"))

    def test_environment_variables_as_bokeh_serve(self, recorder, certificate, monkeypatch) -> None:
        cert, key = certificate
        monkeypatch.setenv("BOKEH_SSL_CERTFILE", str(cert))
        monkeypatch.setenv("BOKEH_SSL_KEYFILE", str(key))
        assert run(str(APPS / "echo.py"))["tls_context_factory"] is not None

    def test_key_inside_the_certificate_file(self, recorder, certificate, tmp_path) -> None:
        cert, key = certificate
        both = tmp_path / "both.pem"
        both.write_bytes(cert.read_bytes() + key.read_bytes())
        assert run(str(APPS / "echo.py"), "--ssl-certfile", str(both))["tls_context_factory"] is not None

    def test_password_protected_key_with_bokeh_ssl_password(self, recorder, certificate, monkeypatch) -> None:
        cert, key = certificate
        encrypted = encrypted_copy(key, "s3cret")
        args = (str(APPS / "echo.py"), "--ssl-certfile", str(cert), "--ssl-keyfile", str(encrypted))
        with pytest.raises(CommandError, match="set BOKEH_SSL_PASSWORD to its password"):
            run(*args)
        monkeypatch.setenv("BOKEH_SSL_PASSWORD", "wrong")
        with pytest.raises(CommandError, match="Is BOKEH_SSL_PASSWORD right"):
            run(*args)
        monkeypatch.setenv("BOKEH_SSL_PASSWORD", "s3cret")
        assert run(*args)["tls_context_factory"] is not None

    def test_key_of_another_certificate_is_refused(self, recorder, certificate, tmp_path) -> None:
        cert, _ = certificate
        other = tmp_path / "other"
        other.mkdir()
        _, other_key = self_signed_certificate(other)
        with pytest.raises(CommandError, match="does not match the certificate"):
            run(str(APPS / "echo.py"), "--ssl-certfile", str(cert), "--ssl-keyfile", str(other_key))

    def test_missing_files_and_bad_combinations(self, recorder, certificate) -> None:
        cert, key = certificate
        with pytest.raises(CommandError, match="Cannot read the TLS certificate"):
            run(str(APPS / "echo.py"), "--ssl-certfile", "/no/such/cert.pem")
        with pytest.raises(CommandError, match="needs --ssl-certfile"):
            run(str(APPS / "echo.py"), "--ssl-keyfile", str(key))
        with pytest.raises(CommandError, match="cannot be combined with --unix-socket"):
            run(str(APPS / "echo.py"), "--ssl-certfile", str(cert), "--unix-socket", "/tmp/x.sock")


def http_scope(*headers: tuple[str, str], kind: str = "http") -> dict:
    return {"type": kind, "scheme": "http" if kind == "http" else "ws", "client": ["10.0.0.1", 4000],
            "headers": [(name.lower().encode(), value.encode()) for name, value in headers]}


class TestXheaders:
    """--use-xheaders: Tornado's rules (bokeh serve's), applied by BokehDaphneServer to every scope."""

    def test_flag_reaches_the_server(self, recorder) -> None:
        assert run(str(APPS / "echo.py"), "--use-xheaders")["use_xheaders"] is True
        assert "use_xheaders" not in run(str(APPS / "echo.py"))

    @pytest.mark.parametrize(("headers", "client", "scheme"), [
        ((), "10.0.0.1", "http"),
        ((("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")), "203.0.113.7", "https"),
        # The last entry is the one the nearest proxy added; the first is whatever the client sent.
        ((("X-Forwarded-For", "1.2.3.4, 198.51.100.2"),), "198.51.100.2", "http"),
        ((("X-Real-Ip", "192.0.2.9"), ("X-Forwarded-For", "198.51.100.2")), "192.0.2.9", "http"),
        ((("X-Scheme", "https"), ("X-Forwarded-Proto", "http")), "10.0.0.1", "https"),
        ((("X-Forwarded-Proto", "http, https"),), "10.0.0.1", "https"),
        ((("X-Real-Ip", "not-an-address"), ("X-Forwarded-Proto", "gopher")), "10.0.0.1", "http"),
        ((("X-Real-Ip", "2001:db8::1"),), "2001:db8::1", "http"),
    ])
    def test_tornado_rules(self, headers, client, scheme) -> None:
        scope = http_scope(*headers)
        apply_xheaders(scope)
        assert (scope["client"][0], scope["scheme"]) == (client, scheme)

    def test_websocket_scheme_is_wss(self) -> None:
        scope = http_scope(("X-Forwarded-Proto", "https"), kind="websocket")
        apply_xheaders(scope)
        assert scope["scheme"] == "wss"


class TestDjangoDoesIt:
    """--enable-xsrf-cookies and --cookie-secret: Django's CSRF middleware and SECRET_KEY instead."""

    def test_xsrf_flag_is_accepted_and_says_what_protects(self, recorder, caplog) -> None:
        with caplog.at_level(logging.INFO, "bokehserve_django"):
            run(str(APPS / "echo.py"), "--enable-xsrf-cookies")
        assert "Django's CsrfViewMiddleware" in caplog.text

    def test_xsrf_variable_too(self, recorder, caplog, monkeypatch) -> None:
        monkeypatch.setenv("BOKEH_XSRF_COOKIES", "true")
        with caplog.at_level(logging.INFO, "bokehserve_django"):
            run(str(APPS / "echo.py"))
        assert "Django's CsrfViewMiddleware" in caplog.text

    def test_xsrf_without_the_middleware_is_refused(self, recorder, settings) -> None:
        settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "csrf" not in m]
        with pytest.raises(CommandError, match="CsrfViewMiddleware is not in MIDDLEWARE. Add it"):
            run(str(APPS / "echo.py"), "--enable-xsrf-cookies")

    def test_cookie_secret_flag_is_refused_with_the_django_way(self, recorder) -> None:
        with pytest.raises(CommandError, match="Django's SECRET_KEY signs cookies"):
            run(str(APPS / "echo.py"), "--cookie-secret", "abc")

    def test_cookie_secret_variable_is_a_warning(self, recorder, caplog, monkeypatch) -> None:
        monkeypatch.setenv("BOKEH_COOKIE_SECRET", "abc")
        with caplog.at_level(logging.WARNING, "bokehserve_django"):
            run(str(APPS / "echo.py"))
        assert "BOKEH_COOKIE_SECRET is set but not used" in caplog.text
        assert "abc" not in caplog.text


async def asgi_get(application, path: str) -> tuple[int, bytes]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await application({"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""},
                      receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


class TestIcoPath:
    def test_a_file_becomes_the_favicon(self, recorder, tmp_path) -> None:
        from bokeh.settings import settings as bokeh_env_settings

        from bokehserve_django import views

        icon = tmp_path / "site.ico"
        icon.write_bytes(b"\x00\x00\x01\x00 our icon")
        run(str(APPS / "echo.py"), "--ico-path", str(icon))
        assert bokeh_env_settings.ico_path() == str(icon)
        assert views.favicon(None).content == icon.read_bytes()

    def test_none_answers_404(self, recorder) -> None:
        application = run(str(APPS / "echo.py"), "--ico-path", "none")["application"]
        status, body = asyncio.run(asgi_get(application, "/favicon.ico"))
        assert status == 404
        assert b"--ico-path none" in body

    def test_a_missing_file_is_refused(self, recorder) -> None:
        with pytest.raises(CommandError, match="is not a file"):
            run(str(APPS / "echo.py"), "--ico-path", "/no/such/icon.ico")
        with pytest.raises(CommandError, match="give a .ico file or 'none'"):
            run(str(APPS / "echo.py"), "--ico-path", str(APPS / "echo.py"))


class TestLogging:
    def test_log_file_and_format(self, recorder, tmp_path) -> None:
        log_file = tmp_path / "bokeh.log"
        run(str(APPS / "echo.py"), "--log-file", str(log_file), "--log-format", "[%(levelname)s] %(message)s")
        logging.getLogger("bokehserve_django.test").info("hello from the test")
        for handler in logging.getLogger("bokehserve_django").handlers:
            handler.flush()
        text = log_file.read_text()
        assert "[INFO] Starting Bokeh server (daphne)" in text
        assert "[INFO] hello from the test" in text

    def test_bad_format_and_unwritable_file_are_refused(self, recorder) -> None:
        with pytest.raises(CommandError, match="not a Python logging format"):
            run(str(APPS / "echo.py"), "--log-format", "%(nosuchfield)s")
        with pytest.raises(CommandError, match="cannot open it for writing"):
            run(str(APPS / "echo.py"), "--log-file", "/no/such/dir/bokeh.log")


class TestUseConfig:
    """--use-config: bokeh's YAML settings file, loaded by bokeh, its keys mapped like the flags."""

    def test_keys_map_like_their_flags(self, recorder, certificate, tmp_path, caplog) -> None:
        from bokeh.settings import settings as bokeh_env_settings

        cert, key = certificate
        config = tmp_path / "bokeh.yaml"
        config.write_text(
            f"ssl_certfile: {cert}\nssl_keyfile: {key}\nsecret_key: from-the-config-file-0123456789abcdef\n"
            "sign_sessions: true\nallowed_ws_origin: [example.com]\nresources: cdn\npy_log_level: debug\n"
            "validation_level: errors\nport: 1234\n"
        )
        with caplog.at_level(logging.INFO, "bokehserve_django.runbokeh"):
            kwargs = run(str(APPS / "echo.py"), "--use-config", str(config))
        assert logging.getLogger("bokehserve_django").level == logging.DEBUG  # py_log_level
        assert kwargs["tls_context_factory"] is not None
        assert bokeh_settings.SECRET_KEY == "from-the-config-file-0123456789abcdef"
        assert bokeh_settings.sign_sessions is True
        assert bokeh_settings.ALLOWED_ORIGINS[0] == "example.com"
        assert bokeh_settings.RESOURCES == "cdn"
        assert bokeh_env_settings.validation_level() == "errors"  # bokeh's own keys reach bokeh
        assert "ignoring 'port': not bokeh settings" in caplog.text
        assert kwargs["endpoints"] == ["tcp:port=5006:interface=127.0.0.1"]

    def test_flags_win_over_the_file(self, recorder, tmp_path) -> None:
        config = tmp_path / "bokeh.yaml"
        config.write_text("sign_sessions: true\n")
        run(str(APPS / "echo.py"), "--use-config", str(config), "--session-ids", "unsigned")
        assert bokeh_settings.sign_sessions is False

    def test_what_is_refused_as_a_flag_is_refused_in_the_file(self, recorder, tmp_path) -> None:
        config = tmp_path / "bokeh.yaml"
        config.write_text("cookie_secret: abc\n")
        with pytest.raises(CommandError, match="cookie_secret from the --use-config file"):
            run(str(APPS / "echo.py"), "--use-config", str(config))

    def test_unreadable_file(self, recorder, tmp_path) -> None:
        with pytest.raises(CommandError, match="YAML file of 'name: value' lines"):
            run(str(APPS / "echo.py"), "--use-config", str(tmp_path / "missing.yaml"))
        listing = tmp_path / "list.yaml"
        listing.write_text("- a\n- b\n")
        with pytest.raises(CommandError, match="expected 'name: value' lines"):
            run(str(APPS / "echo.py"), "--use-config", str(listing))


class TestCompression:
    def test_levels_reach_the_server(self, recorder) -> None:
        kwargs = run(str(APPS / "echo.py"), "--websocket-compression-level", "5",
                     "--websocket-compression-mem-level", "7")
        assert (kwargs["websocket_compression_level"], kwargs["websocket_compression_mem_level"]) == (5, 7)
        assert "websocket_compression_level" not in run(str(APPS / "echo.py"))

    @pytest.mark.parametrize("flag", ["--websocket-compression-level", "--websocket-compression-mem-level"])
    def test_out_of_range_is_refused(self, recorder, flag) -> None:
        with pytest.raises(CommandError, match="expected a whole number from"):
            run(str(APPS / "echo.py"), flag, "10")

    def test_server_accepts_permessage_deflate_only_when_asked(self) -> None:
        from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
        from daphne.ws_protocol import WebSocketFactory

        offer = PerMessageDeflateOffer()
        plain = BokehDaphneServer(application=None, endpoints=["tcp:port=0"])
        plain.ws_factory = WebSocketFactory(plain)
        assert plain.ws_factory.perMessageCompressionAccept([offer]) is None
        server = BokehDaphneServer(application=None, endpoints=["tcp:port=0"], websocket_compression_level=5,
                                   websocket_compression_mem_level=7)
        server.ws_factory = WebSocketFactory(server)
        accept = server.ws_factory.perMessageCompressionAccept([offer])
        assert isinstance(accept, PerMessageDeflateOfferAccept)
        assert accept.mem_level == 7
        assert server.ws_factory.bokeh_compression_level == 5


    def test_the_level_is_used_for_what_the_server_sends(self, monkeypatch) -> None:
        import zlib
        from types import SimpleNamespace

        from autobahn.websocket.compress import PerMessageDeflate
        from daphne.ws_protocol import WebSocketProtocol

        from bokehserve_django.server import BokehWebSocketProtocol

        monkeypatch.setattr(WebSocketProtocol, "onOpen", lambda self: None)  # daphne's: tells the app
        protocol = BokehWebSocketProtocol()
        protocol.factory = SimpleNamespace(bokeh_compression_level=1)
        protocol.request = SimpleNamespace(path="/app/ws")  # what an upgraded connection has
        negotiated = PerMessageDeflate(True, False, False, 15, 15, 5)
        protocol._perMessageCompress = negotiated
        protocol.websocket_extensions_in_use = [negotiated]
        protocol.onOpen()
        deflate = protocol._perMessageCompress
        assert protocol.websocket_extensions_in_use == [deflate]
        assert (deflate.compression_level, deflate.mem_level) == (1, 5)
        payload = b"".join(str(i).encode() for i in range(5000))
        deflate.start_compress_message()
        wire = deflate.compress_message_data(payload) + deflate.end_compress_message()
        expected = zlib.compressobj(1, zlib.DEFLATED, -15, 5)
        assert wire == (expected.compress(payload) + expected.flush(zlib.Z_SYNC_FLUSH))[:-4]


class TestNumProcsZero:
    def test_zero_means_one_per_core(self, recorder, monkeypatch) -> None:
        monkeypatch.setattr(os, "cpu_count", lambda: 3)
        with pytest.raises(CommandError, match="--num-procs 3 needs a channel layer"):
            run(str(APPS / "echo.py"), "--num-procs", "0")
        monkeypatch.setattr(os, "cpu_count", lambda: 1)
        assert run(str(APPS / "echo.py"), "--num-procs", "0")["endpoints"]


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

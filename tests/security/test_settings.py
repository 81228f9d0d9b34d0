"""Security settings: deploy-time system checks, and moving from ``bokeh serve`` (BOKEH_* environment
variables override BOKEHSERVE; runbokeh flags override both; --auth-module is refused)."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from bokeh.util.token import generate_jwt_token, generate_session_id, get_token_payload
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from bokehserve_django import signing
from bokehserve_django.checks import Codes
from bokehserve_django.conf import OVERRIDES_ENV, bokeh_settings
from bokehserve_django.exceptions import InvalidToken
from tests.live import LiveServer

STRONG_KEY = "s" * 48
REDIS_LAYER = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                           "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:6399", "socket_timeout": 15}]}}}
BOKEH_VARIABLES = ("BOKEH_SECRET_KEY", "BOKEH_SIGN_SESSIONS", "BOKEH_ALLOW_WS_ORIGIN",
                   "BOKEH_SESSION_TOKEN_EXPIRATION", "BOKEH_RESOURCES", "BOKEH_MINIFIED")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No BOKEH_* variables or runbokeh overrides from outside; settings re-read after the test."""
    for name in (*BOKEH_VARIABLES, OVERRIDES_ENV):
        monkeypatch.delenv(name, raising=False)
    bokeh_settings.reload()
    yield monkeypatch
    monkeypatch.undo()
    bokeh_settings.reload()


def setenv(monkeypatch, **variables: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    bokeh_settings.reload()


# ---------------------------------------------------------------------------
# manage.py check --deploy
# ---------------------------------------------------------------------------


@pytest.fixture
def production(settings):
    """A production-like configuration that passes our deploy checks; tests break one thing each."""
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["example.com"]
    settings.CHANNEL_LAYERS = REDIS_LAYER
    settings.BOKEHSERVE = {"APPS": {}, "ALLOWED_ORIGINS": ["example.com"]}
    return settings


def deploy_warnings(deploy: bool = True) -> set[str]:
    # Problems only: the I001 note (cluster features off with the in-memory layer) is not one.
    return {
        m.id for m in run_checks(include_deployment_checks=deploy)
        if m.id.startswith("bokehserve_django") and m.id != "bokehserve_django.I001"
    }


def test_production_configuration_passes(production) -> None:
    assert deploy_warnings() == set()


@pytest.mark.parametrize(("change", "code"), [
    (lambda s: s.BOKEHSERVE.update({"ALLOWED_ORIGINS": ["example.com", "*"]}), Codes.ORIGIN_WILDCARD),
    (lambda s: s.BOKEHSERVE.update({"SIGN_SESSIONS": False}), Codes.UNSIGNED_SESSIONS),
    (lambda s: s.BOKEHSERVE.update({"SECRET_KEY": "short-key"}), Codes.WEAK_SIGNING_KEY),
    (lambda s: setattr(s, "CHANNEL_LAYERS", {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}),
     Codes.IN_MEMORY_LAYER),
], ids=["star-origin", "unsigned-sessions", "weak-signing-key", "in-memory-layer"])
def test_each_weakness_is_flagged_by_check_deploy(production, change, code) -> None:
    change(production)
    production.BOKEHSERVE = dict(production.BOKEHSERVE)  # fire setting_changed
    assert deploy_warnings() == {code}
    assert code not in deploy_warnings(deploy=False)  # only under --deploy


@pytest.mark.parametrize(("variable", "value", "code"), [
    ("BOKEH_ALLOW_WS_ORIGIN", "*", Codes.ORIGIN_WILDCARD),
    ("BOKEH_SIGN_SESSIONS", "false", Codes.UNSIGNED_SESSIONS),
    ("BOKEH_SECRET_KEY", "short-key", Codes.WEAK_SIGNING_KEY),
])
def test_weaknesses_from_bokeh_environment_variables_are_flagged_too(production, clean_environment, variable,
                                                                       value, code) -> None:
    setenv(clean_environment, **{variable: value})
    assert deploy_warnings() == {code}


def test_runbokeh_refuses_to_start_without_allowed_hosts(settings, clean_environment) -> None:
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = []
    with pytest.raises(CommandError, match="ALLOWED_HOSTS is empty"):
        call_command("runbokeh")


# ---------------------------------------------------------------------------
# Precedence: runbokeh flag > BOKEH_* environment variable > BOKEHSERVE > default
# ---------------------------------------------------------------------------


def runbokeh_overrides(*argv: str) -> dict:
    """What ``manage.py runbokeh <argv>`` passes to its server processes."""
    from bokehserve_django.management.commands.runbokeh import Command

    command = Command()
    options = vars(command.create_parser("manage.py", "runbokeh").parse_args(list(argv)))
    return command.build_overrides(options)


def apply(monkeypatch, settings, *, bokehserve=None, env=None, flags=None) -> None:
    settings.BOKEHSERVE = bokehserve or {}
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    if flags is not None:
        monkeypatch.setenv(OVERRIDES_ENV, json.dumps(runbokeh_overrides(*flags)))
    bokeh_settings.reload()


PRECEDENCE = [
    # (setting, BOKEHSERVE value, BOKEH_* variable and value, runbokeh flags, expected at each level)
    ("SIGN_SESSIONS", True, ("BOKEH_SIGN_SESSIONS", "false"), ["--session-ids", "signed"], (None, True, False, True)),
    ("SIGN_SESSIONS", False, ("BOKEH_SIGN_SESSIONS", "true"), ["--session-ids", "unsigned"],
     (None, False, True, False)),
    ("SESSION_TOKEN_EXPIRATION", 100, ("BOKEH_SESSION_TOKEN_EXPIRATION", "200"),
     ["--session-token-expiration", "300"], (300, 100, 200, 300)),
    ("SECRET_KEY", "k" * 40, ("BOKEH_SECRET_KEY", "e" * 40), [], (None, "k" * 40, "e" * 40, "e" * 40)),
    # --allow-websocket-origin adds to the list for the run (as the issue asks), it does not replace it.
    ("ALLOWED_ORIGINS", ["settings.example"], ("BOKEH_ALLOW_WS_ORIGIN", "env.example, other.example:8443"),
     ["--allow-websocket-origin", "flag.example"],
     ([], ["settings.example"], ["env.example", "other.example:8443"],
      ["env.example", "other.example:8443", "flag.example"])),
]


@pytest.mark.parametrize(("key", "configured", "variable", "flags", "expected"), PRECEDENCE,
                         ids=[f"{p[0]}-{i}" for i, p in enumerate(PRECEDENCE)])
def test_precedence(settings, clean_environment, key, configured, variable, flags, expected) -> None:
    default, from_settings, from_env, from_flag = expected
    apply(clean_environment, settings)
    assert getattr(bokeh_settings, key) == default
    apply(clean_environment, settings, bokehserve={key: configured})
    assert getattr(bokeh_settings, key) == from_settings
    apply(clean_environment, settings, bokehserve={key: configured}, env=dict([variable]))
    assert getattr(bokeh_settings, key) == from_env
    apply(clean_environment, settings, bokehserve={key: configured}, env=dict([variable]), flags=flags)
    assert getattr(bokeh_settings, key) == from_flag


def test_external_signed_flag_means_signed_and_no_generated_ids(settings, clean_environment) -> None:
    apply(clean_environment, settings, env={"BOKEH_SIGN_SESSIONS": "false"}, flags=["--session-ids", "external-signed"])
    assert bokeh_settings.sign_sessions is True
    assert bokeh_settings.GENERATE_SESSION_IDS is False


def test_bad_environment_value_names_the_variable(settings, clean_environment) -> None:
    apply(clean_environment, settings, env={"BOKEH_SIGN_SESSIONS": "maybe"})
    with pytest.raises(ImproperlyConfigured, match="BOKEH_SIGN_SESSIONS"):
        bokeh_settings.SIGN_SESSIONS  # noqa: B018


def test_tokens_from_an_old_bokeh_serve_deployment_keep_working(settings, clean_environment) -> None:
    """BOKEH_SECRET_KEY + BOKEH_SIGN_SESSIONS as bokeh serve had them: a token made by bokeh's own
    helpers with that key (what bokeh.client and server_session code produce) is accepted, and one
    signed with our derived key is not (the variable really is the key in use)."""
    key = "migrated-bokeh-secret-key-0123456789abcdef"
    apply(clean_environment, settings, env={"BOKEH_SECRET_KEY": key, "BOKEH_SIGN_SESSIONS": "true"})
    token = generate_jwt_token(generate_session_id(secret_key=key.encode(), signed=True), secret_key=key.encode(),
                               signed=True)
    assert signing.read_token(token).session_id
    other = b"not-the-migrated-key-0123456789abcdefghijk"
    with pytest.raises(InvalidToken):
        signing.read_token(generate_jwt_token(generate_session_id(secret_key=other, signed=True),
                                              secret_key=other, signed=True))


@pytest.mark.parametrize(("flag", "says"), [
    (["--auth-module", "auth.py"], "access"),
    (["--cookie-secret", "abc"], "SECRET_KEY"),
])
def test_bokeh_serve_auth_flags_are_refused_with_what_to_use_instead(flag, says) -> None:
    with pytest.raises(CommandError, match=says):
        runbokeh_overrides(*flag)


# ---------------------------------------------------------------------------
# The same precedence in a real server
# ---------------------------------------------------------------------------


def page_token(live: LiveServer) -> dict:
    from tests.security.helpers import token_in

    html = urllib.request.urlopen(f"{live.url}/echo", timeout=20).read().decode()
    payload = get_token_payload(token_in(html))
    return payload


def upgrade(live: LiveServer, token: str, origin: str | None) -> int:
    import asyncio

    import websockets
    from websockets.exceptions import InvalidStatus

    async def attempt() -> int:
        try:
            async with websockets.connect(live.url.replace("http", "ws") + "/echo/ws", origin=origin,
                                          subprotocols=["bokeh", token], open_timeout=20):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    return asyncio.run(attempt())


def unsigned_token() -> str:
    return generate_jwt_token(generate_session_id(signed=False), secret_key=None, signed=False)


def test_environment_and_flags_in_a_live_server() -> None:
    """tests.security.settings signs sessions; BOKEH_SIGN_SESSIONS=false turns that off, and
    --session-ids signed turns it back on. Origins: the variable replaces ALLOWED_ORIGINS, flags add."""
    env = {"BOKEH_SIGN_SESSIONS": "false", "BOKEH_ALLOW_WS_ORIGIN": "env.example",
           "BOKEH_SESSION_TOKEN_EXPIRATION": "200"}
    with_env = LiveServer(settings="tests.security.settings", env=env)
    try:
        assert upgrade(with_env, unsigned_token(), origin=None) == 101
        assert upgrade(with_env, unsigned_token(), origin="http://env.example") == 101
        assert upgrade(with_env, unsigned_token(), origin="http://flag.example") == 403
        assert abs(page_token(with_env)["session_expiry"] - time.time() - 200) < 10
    finally:
        with_env.stop()
    with_flags = LiveServer("--session-ids", "signed", "--allow-websocket-origin", "flag.example",
                            "--session-token-expiration", "60", settings="tests.security.settings", env=env)
    try:
        assert upgrade(with_flags, unsigned_token(), origin=None) == 403
        assert "Invalid token signature" in with_flags.log
        signed = generate_jwt_token(generate_session_id(secret_key=b"x" * 40, signed=True), secret_key=b"x" * 40,
                                    signed=True)
        assert upgrade(with_flags, signed, origin=None) == 403  # signed, but not with the site's key
        assert upgrade(with_flags, unsigned_token(), origin="http://flag.example") == 403  # still unsigned
        key = signing.secret_key()  # derived from the SECRET_KEY both processes share
        site_signed = generate_jwt_token(generate_session_id(secret_key=key, signed=True), secret_key=key, signed=True)
        assert upgrade(with_flags, site_signed, origin="http://flag.example") == 101
        assert upgrade(with_flags, site_signed, origin="http://env.example") == 101  # the flag added to the list
        assert upgrade(with_flags, site_signed, origin="http://evil.example") == 403
        assert abs(page_token(with_flags)["session_expiry"] - time.time() - 60) < 10
    finally:
        with_flags.stop()

"""System checks: each problem gives its id, message and hint."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.checks import Error, Warning

from bokehserve_django import registry
from bokehserve_django.checks import Codes, Hints, Messages, check_configuration, check_deployment

APPS = Path(__file__).resolve().parents[1] / "apps"


def test_clean_configuration_passes_with_a_note_on_the_in_memory_layer(settings) -> None:
    registry.reset()
    assert [e.id for e in check_configuration()] == [Codes.CLUSTER_OFF]
    assert "InMemoryChannelLayer" in check_configuration()[0].msg


def test_missing_channel_layers(settings) -> None:
    del settings.CHANNEL_LAYERS
    assert Error(Messages.NO_CHANNEL_LAYERS, hint=Hints.NO_CHANNEL_LAYERS, id=Codes.NO_CHANNEL_LAYERS) in check_configuration()


def test_missing_bokehjs_finder(settings) -> None:
    settings.STATICFILES_FINDERS = ["django.contrib.staticfiles.finders.AppDirectoriesFinder"]
    assert Error(Messages.NO_FINDER, hint=Hints.NO_FINDER, id=Codes.NO_FINDER) in check_configuration()


def test_invalid_settings(settings) -> None:
    settings.BOKEHSERVE = {"NOPE": 1}
    assert [e.id for e in check_configuration()] == [Codes.BAD_SETTINGS]


def test_broken_app(settings) -> None:
    settings.BOKEHSERVE = {"APPS": {"bad": APPS / "broken" / "syntax_error.py"}}
    errors = check_configuration()
    assert [e.id for e in errors] == [Codes.APP_FAILED, Codes.CLUSTER_OFF]
    assert "'bad'" in errors[0].msg
    registry.reset()


def test_deploy_warnings(settings) -> None:
    settings.DEBUG = False
    settings.BOKEHSERVE = {"ALLOWED_ORIGINS": ["*"], "SIGN_SESSIONS": False}
    assert check_deployment() == [
        Warning(Messages.ORIGIN_WILDCARD, hint=Hints.ORIGIN_WILDCARD, id=Codes.ORIGIN_WILDCARD),
        Warning(Messages.IN_MEMORY_LAYER, hint=Hints.IN_MEMORY_LAYER, id=Codes.IN_MEMORY_LAYER),
        Warning(Messages.UNSIGNED_SESSIONS, hint=Hints.UNSIGNED_SESSIONS, id=Codes.UNSIGNED_SESSIONS),
    ]


def test_no_deploy_warnings_in_debug(settings) -> None:
    settings.DEBUG = True
    settings.BOKEHSERVE = {"ALLOWED_ORIGINS": ["*"]}
    assert check_deployment() == []


def test_redis_hosts_without_a_longer_socket_timeout(settings) -> None:
    from bokehserve_django.checks import Codes

    backend = "channels_redis.core.RedisChannelLayer"
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": backend, "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"]}}}
    assert Codes.REDIS_SOCKET_TIMEOUT in [e.id for e in check_configuration()]
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": backend, "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:6379/0", "socket_timeout": 15}]}}
    }
    assert Codes.REDIS_SOCKET_TIMEOUT not in [e.id for e in check_configuration()]


class TestLifespanCheck:
    """W006 (deploy): a site router that bypasses LifecycleMiddleware drains only under daphne."""

    def test_bokeh_asgi_application_passes(self, settings) -> None:
        from bokehserve_django.checks import check_lifespan

        settings.ASGI_APPLICATION = "tests.asgi.application"
        assert check_lifespan() == []

    def test_a_bare_router_is_reported_with_the_wrapper_to_use(self, settings) -> None:
        from bokehserve_django.checks import check_lifespan

        settings.ASGI_APPLICATION = "tests.unit.test_checks.bare_router"
        assert check_lifespan() == [
            Warning(
                Messages.NO_LIFESPAN.format(path="tests.unit.test_checks.bare_router"),
                hint=Hints.NO_LIFESPAN,
                id=Codes.NO_LIFESPAN,
            )
        ]

    def test_a_wrapped_router_passes(self, settings) -> None:
        from bokehserve_django.checks import check_lifespan

        settings.ASGI_APPLICATION = "tests.unit.test_checks.wrapped_router"
        assert check_lifespan() == []


def _site_router():
    from channels.auth import AuthMiddlewareStack
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.core.asgi import get_asgi_application

    from bokehserve_django.routing import websocket_urlpatterns

    return ProtocolTypeRouter(
        {"http": get_asgi_application(), "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns))}
    )


def __getattr__(name: str):
    # Built on first use: the ASGI apps need Django set up, which it is by the time a check runs.
    from bokehserve_django.cluster import LifecycleMiddleware

    if name == "bare_router":
        return _site_router()
    if name == "wrapped_router":
        return LifecycleMiddleware(_site_router())
    if name == "plain_django":
        from django.core.asgi import get_asgi_application

        return get_asgi_application()
    if name == "http_only_router":
        from channels.routing import ProtocolTypeRouter
        from django.core.asgi import get_asgi_application

        return ProtocolTypeRouter({"http": get_asgi_application()})
    if name == "other_consumers_only":
        from channels.generic.websocket import WebsocketConsumer
        from channels.routing import ProtocolTypeRouter, URLRouter
        from django.core.asgi import get_asgi_application
        from django.urls import path

        return ProtocolTypeRouter(
            {"http": get_asgi_application(), "websocket": URLRouter([path("chat/", WebsocketConsumer.as_asgi())])}
        )
    raise AttributeError(name)


class TestBadValues:
    """Every invalid value stops `check`, under the name the user wrote (E003 for BOKEHSERVE, E006 for BOKEH_*)."""

    def test_bokehserve_boolean_that_is_not_a_boolean(self, settings) -> None:
        settings.BOKEHSERVE = {"SIGN_SESSIONS": "maybe"}
        assert check_configuration() == [
            Error(
                Messages.BAD_SETTINGS.format(error="BOKEHSERVE['SIGN_SESSIONS'] must be True or False (or None), not 'maybe'."),
                hint=Hints.BAD_SETTINGS,
                id=Codes.BAD_SETTINGS,
            )
        ]

    def test_every_bad_key_is_reported(self, settings) -> None:
        settings.BOKEHSERVE = {"KEEP_ALIVE": -1, "MINIFIED": "no", "PREFIX": 3}
        errors = check_configuration()
        assert [e.id for e in errors] == [Codes.BAD_SETTINGS] * 3
        for key in ("KEEP_ALIVE", "MINIFIED", "PREFIX"):
            assert any(f"BOKEHSERVE[{key!r}] must be" in e.msg for e in errors), key

    def test_environment_variable(self, settings, monkeypatch) -> None:
        from bokehserve_django.conf import bokeh_settings

        monkeypatch.setenv("BOKEH_SIGN_SESSIONS", "maybe")
        bokeh_settings.reload()
        try:
            assert check_configuration() == [
                Error(
                    Messages.BAD_ENVIRONMENT.format(
                        error="BOKEH_SIGN_SESSIONS='maybe' is not valid: it must be true or false (or 1/0, yes/no, "
                        "on/off) (it sets BOKEHSERVE['SIGN_SESSIONS'])."
                    ),
                    hint=Hints.BAD_ENVIRONMENT.format(variable="BOKEH_SIGN_SESSIONS"),
                    id=Codes.BAD_ENVIRONMENT,
                )
            ]
        finally:
            monkeypatch.delenv("BOKEH_SIGN_SESSIONS")
            bokeh_settings.reload()

    def test_environment_value_valid_in_form_but_not_in_range(self, settings, monkeypatch) -> None:
        from bokehserve_django.conf import bokeh_settings

        monkeypatch.setenv("BOKEH_RESOURCES", "nowhere")
        bokeh_settings.reload()
        try:
            errors = check_configuration()
            assert [e.id for e in errors] == [Codes.BAD_ENVIRONMENT]
            assert "BOKEH_RESOURCES='nowhere' is not valid: it must be one of server, cdn, inline" in errors[0].msg
        finally:
            monkeypatch.delenv("BOKEH_RESOURCES")
            bokeh_settings.reload()


class TestWebSocketRoutingCheck:
    """E005: an ASGI_APPLICATION that sends no /<app>/ws to our consumer (pages load, plots never connect)."""

    def expected(self, path: str, ws_path: str = "/echo/ws") -> list[Error]:
        return [
            Error(
                Messages.NO_WEBSOCKET_ROUTE.format(path=path, ws_path=ws_path),
                hint=Hints.NO_WEBSOCKET_ROUTE,
                id=Codes.NO_WEBSOCKET_ROUTE,
            )
        ]

    @pytest.mark.parametrize("name", ["plain_django", "http_only_router", "other_consumers_only"])
    def test_unrouted_applications_are_errors(self, settings, name: str) -> None:
        from bokehserve_django.checks import check_websocket_routing

        settings.ASGI_APPLICATION = f"tests.unit.test_checks.{name}"
        assert check_websocket_routing() == self.expected(settings.ASGI_APPLICATION)

    def test_the_path_carries_the_prefix(self, settings) -> None:
        from bokehserve_django.checks import check_websocket_routing

        settings.BOKEHSERVE = {**settings.BOKEHSERVE, "PREFIX": "/bokeh/"}
        settings.ASGI_APPLICATION = "tests.unit.test_checks.plain_django"
        assert check_websocket_routing() == self.expected(settings.ASGI_APPLICATION, "/bokeh/echo/ws")

    @pytest.mark.parametrize(
        "path",
        [
            "tests.asgi.application",  # bokeh_asgi_application(): LifecycleMiddleware, SessionAuthMiddleware
            "tests.cluster.custom_asgi.application",  # a site's own ProtocolTypeRouter + AuthMiddlewareStack
            "tests.unit.test_checks.bare_router",
            "tests.unit.test_checks.wrapped_router",
        ],
    )
    def test_routed_applications_pass(self, settings, path: str) -> None:
        from bokehserve_django.checks import check_websocket_routing

        settings.ASGI_APPLICATION = path
        assert check_websocket_routing() == []

    def test_an_opaque_application_is_given_the_benefit_of_the_doubt(self, settings) -> None:
        from bokehserve_django.checks import check_websocket_routing

        settings.ASGI_APPLICATION = "tests.unit.test_checks.opaque_application"
        assert check_websocket_routing() == []


async def opaque_application(scope, receive, send) -> None:
    """An ASGI app the check cannot look into (it may route WebSockets in any way)."""

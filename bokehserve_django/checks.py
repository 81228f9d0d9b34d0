"""System checks for bokehserve_django (ids bokehserve_django.E0nn / W0nn, never reused).

Reads settings and imports ASGI_APPLICATION (to follow its WebSocket routing, E005, and its
middleware, W006); opens no connections. Texts live in Messages/Hints so tests compare the same constants.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Info, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from .conf import bokeh_settings
from .credentials import looks_like_credential_cookie, looks_like_credential_header

FINDER = "bokehserve_django.finders.BokehJSFinder"


class Messages:
    NO_CHANNEL_LAYERS = (
        "CHANNEL_LAYERS is not set; bokehserve_django needs a channel layer to reach sessions and clients."
    )
    NO_FINDER = (
        "BOKEHSERVE['RESOURCES'] is 'server' but STATICFILES_FINDERS lacks bokehserve_django's BokehJS finder, "
        "so pages cannot load BokehJS."
    )
    BAD_SETTINGS = "BOKEHSERVE is invalid: {error}"
    APP_FAILED = "Bokeh application {name!r} failed to load: {error}"
    BAD_ENVIRONMENT = "The environment variable {error}"
    NO_WEBSOCKET_ROUTE = (
        "ASGI_APPLICATION {path!r} does not route Bokeh WebSockets: a WebSocket to {ws_path!r} reaches no "
        "bokehserve_django consumer, so app pages load but their plots never connect."
    )
    ORIGIN_WILDCARD = (
        "BOKEHSERVE['ALLOWED_ORIGINS'] contains '*' while DEBUG is False; any site can open Bokeh sessions here."
    )
    IN_MEMORY_LAYER = (
        "The channel layer is InMemoryChannelLayer while DEBUG is False; it works inside one process only, "
        "so sessions cannot be shared between processes."
    )
    UNSIGNED_SESSIONS = "BOKEHSERVE['SIGN_SESSIONS'] is False while DEBUG is False; anyone can guess session URLs."
    WEAK_SIGNING_KEY = "BOKEHSERVE['SECRET_KEY'] (or BOKEH_SECRET_KEY) is shorter than 32 characters; tokens can be forged."
    CLUSTER_OFF = (
        "Cluster features are off: CHANNEL_LAYERS uses {backend}, so sessions are served by the process that "
        "created them, and broadcasts and sign-outs reach this process only."
    )
    NO_LIFESPAN = (
        "ASGI_APPLICATION {path!r} does not pass through bokehserve_django's LifecycleMiddleware: under uvicorn "
        "or hypercorn, stopping the server would not drain Bokeh sessions (no on_session_destroyed, no close "
        "frames). daphne (runbokeh, python -m bokehserve_django.daphne) drains either way."
    )
    REDIS_SOCKET_TIMEOUT = (
        "CHANNEL_LAYERS['default'] uses channels_redis with redis-py {version}, whose 5 s default socket timeout "
        "equals channels_redis's blocking receive: receives on quiet channels fail with TimeoutError."
    )
    CREDENTIAL_INCLUDED = (
        "BOKEHSERVE['{setting}'] puts {names} into session tokens, which any JavaScript on the page can read, "
        "and these names look like credentials."
    )


class Hints:
    NO_CHANNEL_LAYERS = (
        "Add CHANNEL_LAYERS with channels_redis.core.RedisChannelLayer, or channels.layers.InMemoryChannelLayer "
        "for one process."
    )
    NO_FINDER = (
        f"Add '{FINDER}' to STATICFILES_FINDERS (next to Django's two default finders), or set "
        "BOKEHSERVE['RESOURCES'] to 'cdn'."
    )
    BAD_SETTINGS = "See bokehserve_django/conf.py or docs/settings.md for the valid keys and values."
    APP_FAILED = "Fix the app (the traceback is in the log above), or remove it from BOKEHSERVE['APPS']."
    NO_WEBSOCKET_ROUTE = (
        "In your asgi.py, wrap Django's application: "
        "from bokehserve_django.routing import bokeh_asgi_application; "
        "application = bokeh_asgi_application(get_asgi_application()). "
        "Or route bokehserve_django.routing.websocket_urlpatterns under \"websocket\" in your own "
        "ProtocolTypeRouter (see docs/cluster.md)."
    )
    BAD_ENVIRONMENT = (
        "Give {variable} a valid value or unset it; docs/settings.md (\"Environment variables from bokeh serve\") "
        "lists what each BOKEH_* variable takes."
    )
    ORIGIN_WILDCARD = "List the origins that embed your apps, e.g. ['example.com', 'app.example.com:8443']."
    IN_MEMORY_LAYER = "Use channels_redis.core.RedisChannelLayer when you run more than one process."
    UNSIGNED_SESSIONS = "Remove SIGN_SESSIONS (it defaults to True when DEBUG is False) or set it to True."
    CLUSTER_OFF = (
        "That is right for one process. For several processes or hosts, use channels_redis.core.RedisChannelLayer "
        "(see docs/cluster.md)."
    )
    REDIS_SOCKET_TIMEOUT = (
        "Give each host a longer socket_timeout: \"hosts\": [{\"address\": \"redis://...\", \"socket_timeout\": 15}]."
    )
    NO_LIFESPAN = (
        "Use bokehserve_django.routing.bokeh_asgi_application(), or wrap your router: "
        "application = LifecycleMiddleware(ProtocolTypeRouter({...})) with "
        "from bokehserve_django.cluster import LifecycleMiddleware. Ignore this if you serve with daphne."
    )
    CREDENTIAL_INCLUDED = (
        "Remove them from {setting} unless app code reads them from session_context.request (the Django user "
        "is session_context.user without any cookie). If you keep them, keep SESSION_TOKEN_EXPIRATION short "
        "and use a Content-Security-Policy."
    )
    WEAK_SIGNING_KEY = (
        "Remove it to derive the key from Django's SECRET_KEY, or use a long random value, e.g. "
        "python -c 'import secrets; print(secrets.token_urlsafe(48))'."
    )


class Codes:
    NO_CHANNEL_LAYERS = "bokehserve_django.E001"
    NO_FINDER = "bokehserve_django.E002"
    BAD_SETTINGS = "bokehserve_django.E003"
    APP_FAILED = "bokehserve_django.E004"
    NO_WEBSOCKET_ROUTE = "bokehserve_django.E005"
    BAD_ENVIRONMENT = "bokehserve_django.E006"
    ORIGIN_WILDCARD = "bokehserve_django.W001"
    IN_MEMORY_LAYER = "bokehserve_django.W002"
    UNSIGNED_SESSIONS = "bokehserve_django.W003"
    WEAK_SIGNING_KEY = "bokehserve_django.W004"
    REDIS_SOCKET_TIMEOUT = "bokehserve_django.W005"
    NO_LIFESPAN = "bokehserve_django.W006"
    CREDENTIAL_INCLUDED = "bokehserve_django.W007"
    CLUSTER_OFF = "bokehserve_django.I001"


@register(Tags.compatibility)
def check_configuration(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors: list[Error] = []
    if not getattr(settings, "CHANNEL_LAYERS", None):
        errors.append(Error(Messages.NO_CHANNEL_LAYERS, hint=Hints.NO_CHANNEL_LAYERS, id=Codes.NO_CHANNEL_LAYERS))
    value_errors = _check_values()
    if value_errors:
        return errors + value_errors
    resources = bokeh_settings.RESOURCES
    apps_spec = bokeh_settings.APPS
    finders = getattr(settings, "STATICFILES_FINDERS", [])
    if resources == "server" and FINDER not in finders:
        errors.append(Error(Messages.NO_FINDER, hint=Hints.NO_FINDER, id=Codes.NO_FINDER))
    if apps_spec:
        errors.extend(_check_apps())
    errors.extend(_check_redis_hosts())
    return errors


def _check_values() -> list[Error]:
    """Resolve every setting, so that a bad value stops `check` (and runbokeh) instead of a first page."""
    from .conf import DEFAULTS
    from .exceptions import InvalidEnvironmentVariable

    try:
        # A BOKEHSERVE that is no dict or has an unknown key would fail every key alike: say it once.
        bokeh_settings.user_settings  # noqa: B018
        bokeh_settings.run_overrides  # noqa: B018
    except ImproperlyConfigured as exc:
        return [Error(Messages.BAD_SETTINGS.format(error=exc), hint=Hints.BAD_SETTINGS, id=Codes.BAD_SETTINGS)]
    errors: list[Error] = []
    for name in DEFAULTS:
        try:
            getattr(bokeh_settings, name)
        except InvalidEnvironmentVariable as exc:
            errors.append(
                Error(
                    Messages.BAD_ENVIRONMENT.format(error=exc),
                    hint=Hints.BAD_ENVIRONMENT.format(variable=exc.variable),
                    id=Codes.BAD_ENVIRONMENT,
                )
            )
        except ImproperlyConfigured as exc:
            errors.append(Error(Messages.BAD_SETTINGS.format(error=exc), hint=Hints.BAD_SETTINGS, id=Codes.BAD_SETTINGS))
    return errors


def _long_socket_timeout(host: Any) -> bool:
    """Whether a channels_redis host sets a socket timeout above the 5 s blocking receive (None: no timeout)."""
    if not isinstance(host, dict) or "socket_timeout" not in host:
        return False
    return host["socket_timeout"] is None or host["socket_timeout"] > 5


def _check_redis_hosts() -> list[Warning | Info]:
    layer = (getattr(settings, "CHANNEL_LAYERS", {}) or {}).get("default", {})
    backend = layer.get("BACKEND", "")
    if "channels_redis" not in backend:
        if not backend:
            return []  # E001 says so
        return [Info(Messages.CLUSTER_OFF.format(backend=backend.rsplit(".", 1)[-1]), hint=Hints.CLUSTER_OFF, id=Codes.CLUSTER_OFF)]
    try:
        import redis

        major = int(redis.__version__.split(".")[0])
    except Exception:
        return []
    hosts = layer.get("CONFIG", {}).get("hosts") or ["redis://localhost:6379"]
    if major >= 8 and not all(_long_socket_timeout(host) for host in hosts):
        return [
            Warning(
                Messages.REDIS_SOCKET_TIMEOUT.format(version=redis.__version__),
                hint=Hints.REDIS_SOCKET_TIMEOUT,
                id=Codes.REDIS_SOCKET_TIMEOUT,
            )
        ]
    return []


def _check_apps() -> list[Error]:
    from . import registry

    try:
        apps = registry.registered_apps()
    except ImproperlyConfigured as exc:
        return [Error(Messages.BAD_SETTINGS.format(error=exc), hint=Hints.BAD_SETTINGS, id=Codes.BAD_SETTINGS)]
    return [
        Error(
            Messages.APP_FAILED.format(name=name, error=entry.load_error.details.strip().splitlines()[-1]),
            hint=Hints.APP_FAILED,
            id=Codes.APP_FAILED,
        )
        for name, entry in apps.items()
        if entry.load_error is not None
    ]


@register(Tags.security, deploy=True)
def check_deployment(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    warnings: list[Warning] = []
    if settings.DEBUG:
        return warnings
    try:
        origins = bokeh_settings.ALLOWED_ORIGINS
        sign_setting = bokeh_settings.SIGN_SESSIONS
        signing_key = bokeh_settings.SECRET_KEY
    except ImproperlyConfigured:
        return warnings  # reported by check_configuration
    if "*" in origins:
        warnings.append(Warning(Messages.ORIGIN_WILDCARD, hint=Hints.ORIGIN_WILDCARD, id=Codes.ORIGIN_WILDCARD))
    layers = getattr(settings, "CHANNEL_LAYERS", {}) or {}
    backend = layers.get("default", {}).get("BACKEND", "")
    if backend.endswith("InMemoryChannelLayer"):
        warnings.append(Warning(Messages.IN_MEMORY_LAYER, hint=Hints.IN_MEMORY_LAYER, id=Codes.IN_MEMORY_LAYER))
    if sign_setting is False:
        warnings.append(
            Warning(Messages.UNSIGNED_SESSIONS, hint=Hints.UNSIGNED_SESSIONS, id=Codes.UNSIGNED_SESSIONS)
        )
    if signing_key is not None and len(signing_key) < 32:
        warnings.append(Warning(Messages.WEAK_SIGNING_KEY, hint=Hints.WEAK_SIGNING_KEY, id=Codes.WEAK_SIGNING_KEY))
    return warnings


#: Attributes under which ASGI middleware commonly keeps the application it wraps.
_WRAPPED_ATTRIBUTES = ("app", "inner", "application")


def _passes_through_lifecycle(application: Any, depth: int = 8) -> bool:
    from .cluster import LifecycleMiddleware

    for _ in range(depth):
        if isinstance(application, LifecycleMiddleware):
            return True
        application = next(
            (getattr(application, name) for name in _WRAPPED_ATTRIBUTES if getattr(application, name, None) is not None),
            None,
        )
        if application is None:
            return False
    return False


def _routes_to_bokeh(application: Any, path: str, depth: int = 16) -> bool | None:
    """Whether a WebSocket to ``path`` (no leading slash) reaches BokehConsumer; None: cannot tell.

    Walks the ASGI app as Channels would route it, without calling anything: ProtocolTypeRouter's
    "websocket" entry, middleware (by _WRAPPED_ATTRIBUTES) and URLRouter patterns, which resolve
    without I/O. An app we cannot see into (a plain function, say) gives None, never an error.
    """
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.core.handlers.asgi import ASGIHandler
    from django.urls import Resolver404

    from .consumers import BokehConsumer

    for _ in range(depth):
        consumer_class = getattr(application, "consumer_class", None)
        if consumer_class is not None:
            return isinstance(consumer_class, type) and issubclass(consumer_class, BokehConsumer)
        if isinstance(application, ProtocolTypeRouter):
            if "websocket" not in application.application_mapping:
                return False
            application = application.application_mapping["websocket"]
            continue
        if isinstance(application, URLRouter):
            for route in application.routes:
                try:
                    match = route.pattern.match(path)
                except Resolver404:
                    continue
                if match:
                    return _routes_to_bokeh(route.callback, match[0], depth - 1)
            return False
        if isinstance(application, ASGIHandler):
            return False  # Django's own handler: HTTP only, it refuses every WebSocket
        application = next(
            (getattr(application, name) for name in _WRAPPED_ATTRIBUTES if getattr(application, name, None) is not None),
            None,
        )
        if application is None:
            return None
    return None


def _asgi_application() -> tuple[str | None, Any]:
    """ASGI_APPLICATION and the object it names; (path, None) when unset or not importable.

    runbokeh and daphne report a missing or unimportable ASGI_APPLICATION themselves.
    """
    path = getattr(settings, "ASGI_APPLICATION", None)
    if not path:
        return None, None
    from django.utils.module_loading import import_string

    try:
        return path, import_string(path)
    except Exception:
        return path, None


@register(Tags.compatibility)
def check_websocket_routing(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """E005: ASGI_APPLICATION must send /<app>/ws to our consumer (a bare get_asgi_application() does not)."""
    path, application = _asgi_application()
    if application is None:
        return []
    try:
        names = list(bokeh_settings.APPS)
    except ImproperlyConfigured:
        return []  # E003/E006 report bad settings
    # Any registered name will do (the route takes every name); "app" when none is registered yet.
    ws_path = "/".join(part for part in (bokeh_settings.prefix, names[0] if names else "app", "ws") if part)
    if _routes_to_bokeh(application, ws_path) is not False:
        return []
    return [
        Error(
            Messages.NO_WEBSOCKET_ROUTE.format(path=path, ws_path="/" + ws_path),
            hint=Hints.NO_WEBSOCKET_ROUTE,
            id=Codes.NO_WEBSOCKET_ROUTE,
        )
    ]


@register(Tags.compatibility, deploy=True)
def check_lifespan(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """Under servers with lifespan events, the drain runs only through LifecycleMiddleware."""
    path, application = _asgi_application()
    if application is None or _passes_through_lifecycle(application):
        return []
    return [Warning(Messages.NO_LIFESPAN.format(path=path), hint=Hints.NO_LIFESPAN, id=Codes.NO_LIFESPAN)]


#: INCLUDE_* setting -> how to tell whether one of its names looks like a credential.
_INCLUDE_SETTINGS = (
    ("INCLUDE_HEADERS", looks_like_credential_header),
    ("INCLUDE_COOKIES", looks_like_credential_cookie),
)


@register(Tags.security, deploy=False)
def check_token_contents(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """W007: INCLUDE_HEADERS/INCLUDE_COOKIES let credential-looking names into tokens.

    They are the explicit way to let such names through, so this warns (in development
    too, where the list is written) rather than refusing.
    """
    warnings: list[Warning] = []
    for setting, is_credential in _INCLUDE_SETTINGS:
        try:
            names = getattr(bokeh_settings, setting) or []
        except ImproperlyConfigured:
            continue  # reported by check_configuration (E003)
        flagged = [name for name in names if is_credential(name)]
        if flagged:
            warnings.append(
                Warning(
                    Messages.CREDENTIAL_INCLUDED.format(setting=setting, names=", ".join(map(repr, flagged))),
                    hint=Hints.CREDENTIAL_INCLUDED.format(setting=setting),
                    id=Codes.CREDENTIAL_INCLUDED,
                )
            )
    return warnings

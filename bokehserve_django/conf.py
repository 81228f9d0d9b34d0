"""Reads every bokehserve_django setting, with its default and meaning, in one place.

A site configures the server with one dict in its settings module::

    BOKEHSERVE = {
        "APPS": {
            "sliders": BASE_DIR / "bokeh_apps" / "sliders",      # a directory app
            "hello": "myproject.bokeh_apps.hello:make_document",  # a function(doc)
        },
        "ALLOWED_ORIGINS": ["example.com"],
        "UNUSED_SESSION_LIFETIME": 15_000,
    }

Callers write ``from bokehserve_django.conf import bokeh_settings`` and read attributes
(``bokeh_settings.UNUSED_SESSION_LIFETIME``). ``runbokeh`` overrides settings for one run
through the ``BOKEHSERVE_RUN_OVERRIDES`` environment variable (JSON), so that the override
also reaches reloaded and worker processes. This is the only module that reads
``django.conf.settings`` for our own keys.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from .exceptions import InvalidEnvironmentVariable

__all__ = ("DEFAULTS", "OVERRIDES_ENV", "bokeh_settings")

#: Name of the environment variable through which ``runbokeh`` passes its flags.
OVERRIDES_ENV = "BOKEHSERVE_RUN_OVERRIDES"

DEFAULTS: dict[str, Any] = {
    # Applications: {url name: app spec}. A spec is a path to a .py file, a directory
    # or a .ipynb notebook; a "module:callable" import string of a function(doc); a
    # function(doc); a bokeh Application; or a dict {"app": spec, "args": [...]}.
    "APPS": {},
    # URL prefix under which the apps are served, e.g. "bokeh" -> /bokeh/<app>.
    "PREFIX": "",
    # Host[:port] values allowed in the Origin header of a WebSocket upgrade. Empty: the
    # site's ALLOWED_HOSTS (localhost names when DEBUG is on and ALLOWED_HOSTS is empty).
    "ALLOWED_ORIGINS": [],
    # Sign session ids and tokens with SECRET_KEY below. None: signed unless DEBUG.
    "SIGN_SESSIONS": None,
    # Key for signing session ids and tokens. None: derived from Django's SECRET_KEY.
    "SECRET_KEY": None,
    # Bearer tokens (JWT) of headless clients, made by manage.py bokeh_token (bearer.py):
    # the HS256 key (None: derived from Django's SECRET_KEY), the site named in their
    # audience (None: the first plain host of ALLOWED_HOSTS), their default lifetime (seconds).
    "BEARER_TOKEN_KEY": None,
    "BEARER_TOKEN_SITE": None,
    "BEARER_TOKEN_TTL": 3600,
    # Create a session for a page request without a session id. False: callers must
    # supply ids (bokeh's --session-ids external-signed).
    "GENERATE_SESSION_IDS": True,
    # Seconds for which a session token is valid to open a WebSocket (reconnects too).
    "SESSION_TOKEN_EXPIRATION": 300,
    # Seconds after its expiry during which a page's token may still reconnect to its own
    # session, if that session still exists and the connection is its user's (0: never).
    "SESSION_TOKEN_RECONNECT_GRACE": 86_400,
    # Milliseconds between checks for sessions without connections.
    "CHECK_UNUSED_SESSIONS": 17_000,
    # Milliseconds a session may stay without any connection before it is destroyed.
    "UNUSED_SESSION_LIFETIME": 15_000,
    # Milliseconds between WebSocket pings; 0: none. Applied by runbokeh only: daphne
    # (python -m bokehserve_django.daphne) takes --ping-interval SECONDS instead.
    "KEEP_ALIVE": 37_000,
    # Bytes: largest WebSocket message accepted (runbokeh sets daphne's limit from it).
    "WEBSOCKET_MAX_MESSAGE_SIZE": 20 * 1024 * 1024,
    # Binary buffers one Bokeh message may announce (header "num_buffers").
    "MAX_BUFFERS_PER_MESSAGE": 1024,
    # Request headers / cookies copied into the session token. INCLUDE_*: exactly these
    # names. None: all but EXCLUDE_* and credential-looking names (credentials.py).
    "INCLUDE_HEADERS": None,
    "EXCLUDE_HEADERS": None,
    "INCLUDE_COOKIES": None,
    "EXCLUDE_COOKIES": None,
    # Who may open sessions of apps that set no "access" of their own: "public", "login",
    # {"permissions": [...]}, {"groups": [...]} or a callable(user, request) -> bool.
    "DEFAULT_ACCESS": "public",
    # Live sessions one signed-in user / one client address may hold at once (0: no cap).
    "MAX_SESSIONS_PER_USER": 0,
    "MAX_SESSIONS_PER_ADDRESS": 0,
    # Live sessions this process holds at once (0: no cap). Past it, pages answer 503 with
    # Retry-After, so a balancer tries another process. Sessions being created count too.
    "MAX_SESSIONS": 0,
    # App code (building a session's document) and sync hooks run in a pool of threads,
    # where the ORM works. APP_CODE_THREADS: its size (None: CPUs + 4, at most 32).
    # APP_CODE_THREADS_PER_APP: how many of them one app may hold at once (None: half the
    # pool), so a slow app cannot starve the others. APP_CODE_TIMEOUT: seconds a session's
    # app code (waiting for a thread included) may take before the session is refused with
    # a 503 page (0: no limit); the thread itself cannot be stopped and runs on.
    "APP_CODE_THREADS": None,
    "APP_CODE_THREADS_PER_APP": None,
    "APP_CODE_TIMEOUT": 60,
    # Index page at the prefix root: disable it, disable the redirect to a single
    # app, or render a custom Jinja template (path to a file) instead of ours.
    "DISABLE_INDEX": False,
    "DISABLE_INDEX_REDIRECT": False,
    "INDEX_TEMPLATE": None,
    # Titles the index shows instead of app names: {"sliders": "Sliders demo"}.
    "INDEX_TITLES": {},
    # Paths under the prefix of the liveness and readiness probes (probes.py), answered
    # before Django: no sign-in, no database, no cookie, no ALLOWED_HOSTS check. None: off.
    "LIVENESS_PATH": "healthz",
    "READINESS_PATH": "readyz",
    # How pages load BokehJS: "server" (Django staticfiles, works offline), "cdn" or "inline".
    "RESOURCES": "server",
    # Load BokehJS unminified (easier debugging).
    "MINIFIED": True,
    # Seconds: how often runbokeh logs session counts / memory use (0: never).
    "STATS_LOG_FREQUENCY": 15,
    "MEM_LOG_FREQUENCY": 0,
    # Seconds a stopping process (SIGTERM) waits for its live sessions to end before it
    # destroys the rest; it takes no new sessions meanwhile (see docs/cluster.md).
    "DRAIN_TIMEOUT": 10,
    # Seconds a browser is told to wait (Retry-After) when new sessions cannot be created
    # because the cluster's Redis is unreachable.
    "UNAVAILABLE_RETRY_AFTER": 5,
    # Prometheus metrics (metrics.py; needs the [metrics] extra): the path under the prefix,
    # answered before Django (None: off). Loopback and INTERNAL_IPS clients may scrape unless
    # METRICS_ALLOW_INTERNAL is False; signed-in staff users if METRICS_ALLOW_STAFF; anyone
    # sending "Authorization: Bearer <METRICS_BEARER_TOKEN>" if that is set (a shared secret).
    "METRICS_PATH": "metrics",
    "METRICS_ALLOW_INTERNAL": True,
    "METRICS_ALLOW_STAFF": False,
    "METRICS_BEARER_TOKEN": None,
}

def _env_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("true or false (or 1/0, yes/no, on/off)")


def _env_int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError("a whole number") from None


def _env_list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


#: The environment variables ``bokeh serve`` reads for these features, so a deployment moves
#: over without rewriting its configuration. They override BOKEHSERVE; runbokeh flags
#: override them.
BOKEH_ENVIRONMENT: dict[str, tuple[str, Any]] = {
    "SECRET_KEY": ("BOKEH_SECRET_KEY", str),
    "SIGN_SESSIONS": ("BOKEH_SIGN_SESSIONS", _env_bool),
    "ALLOWED_ORIGINS": ("BOKEH_ALLOW_WS_ORIGIN", _env_list),
    "SESSION_TOKEN_EXPIRATION": ("BOKEH_SESSION_TOKEN_EXPIRATION", _env_int),
    "RESOURCES": ("BOKEH_RESOURCES", str),
    "MINIFIED": ("BOKEH_MINIFIED", _env_bool),
}

#: Variables that bokeh itself parses when it is first imported, and whose invalid value makes
#: that import fail with a bare ValueError (bokeh.resources reads BOKEH_MINIFIED for its CDN
#: object), before any system check could run. apps.py checks them before bokeh is imported.
BOKEH_IMPORT_FATAL = ("BOKEH_MINIFIED",)


def environment_error(variable: str) -> InvalidEnvironmentVariable | None:
    """The error for ``variable`` (one of BOKEH_ENVIRONMENT's) if it holds an invalid value, else None.

    Unset and empty count as not given, as bokeh treats them.
    """
    raw = os.environ.get(variable)
    if not raw:
        return None
    name, convert = next((key, convert) for key, (env, convert) in BOKEH_ENVIRONMENT.items() if env == variable)
    try:
        _validate(name, convert(raw))
    except ValueError as exc:
        return InvalidEnvironmentVariable(variable, raw, f"it must be {exc} (it sets BOKEHSERVE[{name!r}]).")
    return None


#: Keys whose values must be lists of strings (or None where the default is None).
_LIST_KEYS = {"ALLOWED_ORIGINS", "INCLUDE_HEADERS", "EXCLUDE_HEADERS", "INCLUDE_COOKIES", "EXCLUDE_COOKIES"}
_INT_KEYS = {
    "SESSION_TOKEN_EXPIRATION",
    "SESSION_TOKEN_RECONNECT_GRACE",
    "BEARER_TOKEN_TTL",
    "CHECK_UNUSED_SESSIONS",
    "UNUSED_SESSION_LIFETIME",
    "KEEP_ALIVE",
    "WEBSOCKET_MAX_MESSAGE_SIZE",
    "MAX_BUFFERS_PER_MESSAGE",
    "MAX_SESSIONS_PER_USER",
    "MAX_SESSIONS_PER_ADDRESS",
    "MAX_SESSIONS",
    "STATS_LOG_FREQUENCY",
    "MEM_LOG_FREQUENCY",
    "DRAIN_TIMEOUT",
    "UNAVAILABLE_RETRY_AFTER",
}
_BOOL_KEYS = {"SIGN_SESSIONS", "GENERATE_SESSION_IDS", "DISABLE_INDEX", "DISABLE_INDEX_REDIRECT", "MINIFIED"}
_BOOL_KEYS |= {"METRICS_ALLOW_INTERNAL", "METRICS_ALLOW_STAFF"}
#: Shortest METRICS_BEARER_TOKEN accepted: a scrape token is a shared secret, not a password.
_MIN_METRICS_TOKEN_LENGTH = 16
_RESOURCE_MODES = ("server", "cdn", "inline")
_PROBE_PATH = re.compile(r"[A-Za-z0-9_\-.]+(/[A-Za-z0-9_\-.]+)*")


class BokehServeSettings:
    """Settings with defaults, cached, re-read when Django's ``setting_changed`` fires."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    @property
    def user_settings(self) -> dict[str, Any]:
        value = getattr(settings, "BOKEHSERVE", {})
        if not isinstance(value, dict):
            raise ImproperlyConfigured("The BOKEHSERVE setting must be a dict; see bokehserve_django.conf.")
        unknown = set(value) - set(DEFAULTS)
        if unknown:
            raise ImproperlyConfigured(
                f"Invalid BOKEHSERVE setting: {sorted(unknown)[0]!r}. Known keys: {', '.join(sorted(DEFAULTS))}."
            )
        return value

    @property
    def run_overrides(self) -> dict[str, Any]:
        raw = os.environ.get(OVERRIDES_ENV)
        if not raw:
            return {}
        try:
            overrides = json.loads(raw)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{OVERRIDES_ENV} is not valid JSON: {exc}") from exc
        unknown = set(overrides) - set(DEFAULTS) - {"EXTRA_APPS", "EXTRA_ORIGINS"}
        if unknown:
            raise ImproperlyConfigured(f"{OVERRIDES_ENV} holds unknown keys: {sorted(unknown)}")
        return overrides

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in DEFAULTS:
            raise AttributeError(f"Invalid BOKEHSERVE setting: {name!r}")
        if name not in self._cache:
            self._cache[name] = self._resolve(name)
        return self._cache[name]

    def _resolve(self, name: str) -> Any:
        value = self.user_settings.get(name, DEFAULTS[name])
        # Where the value came from, so that an invalid one is reported under the name the user
        # wrote: a BOKEH_* variable is no BOKEHSERVE key.
        source = f"BOKEHSERVE[{name!r}]"
        if name in BOKEH_ENVIRONMENT:
            variable, convert = BOKEH_ENVIRONMENT[name]
            error = environment_error(variable)
            if error is not None:
                raise error
            if os.environ.get(variable):
                value = convert(os.environ[variable])
        overrides = self.run_overrides
        if name in overrides:
            value, source = overrides[name], f"runbokeh's value for {name}"
        try:
            value = _validate(name, value)
        except ValueError as exc:
            # A secret's value stays out of the message (and so out of logs and tracebacks).
            shown = "the value given" if name == "METRICS_BEARER_TOKEN" else repr(value)
            raise ImproperlyConfigured(f"{source} must be {exc}, not {shown}.") from exc
        if name == "APPS":
            extra = overrides.get("EXTRA_APPS", {})
            value = {**value, **{app: _with_configured_options(value.get(app), spec) for app, spec in extra.items()}}
        if name == "ALLOWED_ORIGINS":
            value = value + [str(o) for o in overrides.get("EXTRA_ORIGINS", [])]
        return value

    def reload(self) -> None:
        self._cache.clear()

    # Derived values -------------------------------------------------------

    @property
    def sign_sessions(self) -> bool:
        """Whether session ids and tokens are signed (SIGN_SESSIONS, defaulting to not DEBUG)."""
        value = self.SIGN_SESSIONS
        return (not settings.DEBUG) if value is None else bool(value)

    @property
    def prefix(self) -> str:
        """The URL prefix without slashes at either end ("" for none)."""
        return str(self.PREFIX or "").strip("/")


def _with_configured_options(configured: Any, command_line: dict[str, Any]) -> dict[str, Any]:
    """A runbokeh app that is also in BOKEHSERVE["APPS"] (the same path: runbokeh refuses others)
    keeps the settings entry's access policy and options; its --args, if given, replace the args."""
    if not isinstance(configured, dict):
        return command_line
    merged = {**configured, "app": command_line["app"]}
    if command_line.get("args"):
        merged["args"] = command_line["args"]
    return merged


def _validate(name: str, value: Any) -> Any:
    """Return ``value`` for key ``name`` if it is valid; else raise ValueError("<what it must be>")."""
    if name in _KEY_VALIDATORS:
        return _KEY_VALIDATORS[name](value)
    if name in _LIST_KEYS:
        if value is None and DEFAULTS[name] is None:
            return None
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise ValueError("a list of strings")
        return [str(v) for v in value]
    if name in _INT_KEYS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("a non-negative integer")
        if name == "BEARER_TOKEN_TTL" and value == 0:
            raise ValueError("a positive number of seconds")
        return value
    if name in _BOOL_KEYS:
        # bool(value) would turn "false" into True: only real booleans are accepted.
        if not isinstance(value, bool) and not (value is None and DEFAULTS[name] is None):
            raise ValueError("True or False" + (" (or None)" if DEFAULTS[name] is None else ""))
        return value
    if name == "RESOURCES" and value not in _RESOURCE_MODES:
        raise ValueError(f"one of {', '.join(_RESOURCE_MODES)}")
    if name == "APPS" and not isinstance(value, dict):
        raise ValueError("a dict of {url name: app spec}")
    if name in ("SECRET_KEY", "BEARER_TOKEN_KEY") and value is not None and not isinstance(value, str | bytes):
        raise ValueError("a string (or None to derive it from Django's SECRET_KEY)")
    if name == "BEARER_TOKEN_SITE" and value is not None and not (isinstance(value, str) and value):
        raise ValueError('a site name such as "bokeh.example.com" (or None for the first of ALLOWED_HOSTS)')
    if name == "PREFIX" and not isinstance(value, str):
        raise ValueError('a string such as "bokeh" (or "" for none)')
    if name == "INDEX_TEMPLATE" and value is not None and not isinstance(value, str | os.PathLike):
        raise ValueError("the path of a Jinja template file (or None)")
    return value


def _validate_index_titles(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError('a dict of {app name: title}, e.g. {"sliders": "Sliders demo"}')
    return dict(value)


def _validate_thread_count(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError("a positive number of threads (or None to size it to the machine)")
    return value


def _validate_timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError("a non-negative number of seconds (0 for no limit)")
    return value


def _validate_probe_path(value: Any) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not _PROBE_PATH.fullmatch(value.strip("/"))
        or {".", ".."} & set(value.strip("/").split("/"))
    ):
        raise ValueError('a path such as "healthz" or "probes/live" (letters, digits, "_", "-", ".", "/"), or None')
    return value.strip("/")


def _validate_metrics_token(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) < _MIN_METRICS_TOKEN_LENGTH or not value.isprintable() or " " in value:
        raise ValueError(
            f"a string of at least {_MIN_METRICS_TOKEN_LENGTH} printable characters without spaces, e.g. from "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` (or None)"
        )
    return value


#: Keys validated by a function of their own: value -> the value to use, or ValueError.
_KEY_VALIDATORS = {
    "INDEX_TITLES": _validate_index_titles,
    "LIVENESS_PATH": _validate_probe_path,
    "READINESS_PATH": _validate_probe_path,
    "METRICS_PATH": _validate_probe_path,
    "METRICS_BEARER_TOKEN": _validate_metrics_token,
    "APP_CODE_THREADS": _validate_thread_count,
    "APP_CODE_THREADS_PER_APP": _validate_thread_count,
    "APP_CODE_TIMEOUT": _validate_timeout,
}

bokeh_settings = BokehServeSettings()


def _reload_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting in ("BOKEHSERVE", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS"):
        bokeh_settings.reload()


setting_changed.connect(_reload_on_change)

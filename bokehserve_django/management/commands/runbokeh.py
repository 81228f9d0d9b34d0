"""``manage.py runbokeh [APP ...]``: serve Bokeh apps with daphne, with ``bokeh serve``'s flags.

Options become BOKEHSERVE overrides for this run (through conf.OVERRIDES_ENV, so reloaded
processes see them too), then daphne serves the project's ASGI application.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import webbrowser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import CommandError
from django.core.management.base import BaseCommand
from django.utils import autoreload

from bokehserve_django import metrics, registry
from bokehserve_django.conf import OVERRIDES_ENV, bokeh_settings
from bokehserve_django.exceptions import InvalidAppSpec, PanelNotInstalled
from bokehserve_django.server import add_drain_timeout_argument

logger = logging.getLogger("bokehserve_django.runbokeh")

_LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical")

#: panel serve's sign-in flags: sign-in is Django's here (refused, with what to use instead;
#: --cookie-path and --root-path too, see _panel_flag_refusal).
_PANEL_AUTH_FLAGS = (
    "--basic-auth", "--oauth-provider", "--oauth-key", "--oauth-secret", "--oauth-redirect-uri",
    "--oauth-extra-params", "--oauth-jwt-user", "--oauth-encryption-key", "--oauth-error-template",
    "--oauth-expiry-days", "--oauth-refresh-tokens", "--oauth-guest-endpoints", "--oauth-optional",
    "--login-endpoint", "--logout-endpoint", "--auth-template", "--logout-template", "--basic-login-template",
)
_USE_DJANGO_ADMIN = (
    "Panel's admin page is per process: use the Django admin, the staff page at bokehserve-stats/, "
    "and /healthz and /readyz (see docs/operations.md)"
)
_USE_DJANGO_VIEWS = "serve data with a Django view (or Django REST framework) in your URLconf"
_USE_PROBES = "/healthz (liveness) and /readyz (readiness) are always served (see docs/operations.md)"
#: panel serve's other flags that have a Django way here, and what to use instead.
_PANEL_FLAG_ADVICE = {
    "--admin": _USE_DJANGO_ADMIN,
    "--admin-endpoint": _USE_DJANGO_ADMIN,
    "--admin-log-level": _USE_DJANGO_ADMIN,
    "--rest-provider": _USE_DJANGO_VIEWS,
    "--rest-endpoint": _USE_DJANGO_VIEWS,
    "--rest-session-info": _USE_DJANGO_VIEWS,
    "--session-history": _USE_DJANGO_VIEWS,
    "--liveness": _USE_PROBES,
    "--liveness-endpoint": _USE_PROBES,
    "--setup": "run start-up code in your Django app's AppConfig.ready(), or in an app's on_server_loaded hook",
    "--num-threads": (
        "callbacks run on the event loop here; decorate blocking ones (ORM queries, I/O) with "
        "bokehserve_django.callbacks.run_in_thread (see docs/apps.md)"
    ),
    "--reuse-sessions": "each page gets its own session here; --warm runs the apps once at start-up",
    "--profiler": "profile the process with py-spy (py-spy record --pid PID) or a Django profiler",
    "--plugins": "add your own views to the Django URLconf",
}
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _index_title(value: str) -> tuple[str, str]:
    name, equals, title = value.partition("=")
    if not equals or not name.strip() or not title.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=TITLE (an app's name, then its title), got {value!r}")
    return name.strip().strip("/"), title.strip()


class _StoreDict(argparse.Action):
    """Stores (name, value) pairs as a dict."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        setattr(namespace, self.dest, dict(values))


def _int_range(low: int, high: int) -> Any:
    def convert(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {value!r}") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {number}")
        return number

    return convert


class Command(BaseCommand):
    help = "Serve Bokeh applications with daphne (like 'bokeh serve', inside this Django project)."

    #: The daphne Server class; tests swap in a recorder (as daphne's test_cli does).
    server_cls: Any = None
    # Checks run in inner_run, after our flags are in place: run earlier, they would import
    # the URLconf before --prefix is known.
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> argparse.ArgumentParser:
        """Django's parser, which first refuses panel serve's flags that have a Django way, saying which.

        They are not parser options: registered, they would make abbreviated app arguments
        after --args ambiguous (``--args --b`` would match --basic-auth and --basic-login-template).
        """
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parse_args = parser.parse_args

        def parse_args_refusing_panel_sign_in(args: Any = None, namespace: Any = None) -> Any:
            refusal = _panel_flag_refusal(list(sys.argv[2:] if args is None else args))
            if refusal:
                parser.error(refusal)  # a CommandError under call_command, usage and exit 2 from the shell
            return parse_args(args, namespace)

        parser.parse_args = parse_args_refusing_panel_sign_in  # type: ignore[method-assign]
        return parser

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "apps", nargs="*", metavar="APP",
            help="Bokeh apps to serve besides BOKEHSERVE['APPS']: .py scripts, directories, .ipynb notebooks, or "
            "Panel .md files (with Panel installed).",
        )
        parser.add_argument("--port", type=int, default=5006, help="Port to listen on (default 5006).")
        parser.add_argument(
            "--address", default="127.0.0.1",
            help="Address to listen on (default 127.0.0.1; use 0.0.0.0 for all interfaces).",
        )
        parser.add_argument("--unix-socket", help="Listen on this unix socket instead of a TCP port.")
        parser.add_argument("--show", action="store_true", help="Open the (first) app in a browser.")
        parser.add_argument(
            "--allow-websocket-origin", action="append", default=[], metavar="HOST[:PORT]",
            help="Allow WebSocket connections from this origin (repeatable). Default: the address served.",
        )
        parser.add_argument("--prefix", help="URL prefix for the apps, e.g. 'bokeh' -> /bokeh/<app>.")
        parser.add_argument(
            "--log-level", choices=_LOG_LEVELS,
            help="Level of the server log (default info; py_log_level in a --use-config file).",
        )
        parser.add_argument(
            "--log-format", metavar="FORMAT",
            # argparse %-formats help texts: the format's own % signs are doubled.
            help=f"A Python logging format string for the server log (default {_LOG_FORMAT!r}).".replace("%", "%%"),
        )
        parser.add_argument(
            "--log-file", metavar="PATH",
            help="Write the server log to this file (appending); handlers from LOGGING still get it too.",
        )
        parser.add_argument(
            "--use-config", metavar="CONFIG",
            help="A YAML file of bokeh settings (as for 'bokeh serve --use-config'): ssl_certfile, "
            "ssl_keyfile, ssl_password, ico_path, secret_key, sign_sessions, allowed_ws_origin, "
            "resources, minified, py_log_level, xsrf_cookies, ... Flags given here win over it.",
        )
        parser.add_argument(
            "--ssl-certfile", metavar="CERTFILE",
            help="Serve HTTPS and WSS with this PEM certificate (chain); the key may be in it too. "
            "Also BOKEH_SSL_CERTFILE.",
        )
        parser.add_argument(
            "--ssl-keyfile", metavar="KEYFILE",
            help="The PEM private key for --ssl-certfile. Also BOKEH_SSL_KEYFILE; its password in "
            "BOKEH_SSL_PASSWORD.",
        )
        parser.add_argument(
            "--use-xheaders", action="store_true",
            help="Behind a proxy: take the client address from X-Real-Ip / X-Forwarded-For and the "
            "scheme from X-Scheme / X-Forwarded-Proto. Only behind a proxy that sets them.",
        )
        parser.add_argument(
            "--enable-xsrf-cookies", action="store_true",
            help="Accepted for bokeh serve compatibility: Django's CsrfViewMiddleware already "
            "protects POST/PUT/DELETE (it must be in MIDDLEWARE). Also BOKEH_XSRF_COOKIES.",
        )
        parser.add_argument(
            "--ico-path", metavar="ICO_PATH",
            help="A .ico file served as /favicon.ico, or 'none' for no favicon. Also BOKEH_ICO_PATH.",
        )
        parser.add_argument(
            "--websocket-compression-level", type=_int_range(0, 9), metavar="LEVEL",
            help="Accept permessage-deflate and compress at this zlib level (0-9). Default: no compression.",
        )
        parser.add_argument(
            "--websocket-compression-mem-level", type=_int_range(1, 9), metavar="LEVEL",
            help="Accept permessage-deflate with this zlib memory level (1-9). Default: no compression.",
        )
        parser.add_argument("--dev", action="store_true", help="Reload the server when app or project files change.")
        parser.add_argument("--autoreload", action="store_true", help="The same as --dev (panel serve's name).")
        parser.add_argument(
            "--warm", action="store_true",
            help="Run each app's code once at start-up (a session created and destroyed), so that its "
            "imports and pn.state.as_cached caches are ready for the first visitor (as panel serve --warm).",
        )
        parser.add_argument(
            "--global-loading-spinner", action="store_true",
            help="Show Panel's loading spinner over each Panel app's page until it has rendered "
            "(as panel serve; needs Panel).",
        )
        parser.add_argument(
            "--static-dirs", nargs="+", default=[], metavar="URL=PATH",
            help="Serve these directories at /URL/ (under --prefix), as panel serve --static-dirs. "
            "runbokeh only: in production list them in STATICFILES_DIRS or let the proxy serve them.",
        )
        parser.add_argument("--glob", action="store_true", help="Expand APP arguments as glob patterns.")
        parser.add_argument(
            "--args", dest="app_args", nargs=argparse.REMAINDER, default=[], metavar="...",
            help="Everything after --args is passed to the apps as sys.argv[1:].",
        )
        parser.add_argument(
            "--check-unused-sessions", type=int, metavar="MS",
            help="How often to check for unused sessions, in milliseconds.",
        )
        parser.add_argument(
            "--unused-session-lifetime", type=int, metavar="MS",
            help="How long unused sessions last before they are destroyed, in milliseconds.",
        )
        parser.add_argument("--keep-alive", type=int, metavar="MS", help="Milliseconds between pings; 0 disables them.")
        parser.add_argument(
            "--websocket-max-message-size", type=int, metavar="BYTES",
            help="Largest WebSocket message accepted, in bytes (default 20 MiB).",
        )
        parser.add_argument(
            "--session-token-expiration", type=int, metavar="SECONDS",
            help="How long a session token may be used to open a WebSocket, in seconds.",
        )
        for kind in ("headers", "cookies"):
            parser.add_argument(
                f"--include-{kind}", type=_csv, metavar="A,B",
                help=f"Only these request {kind} go into session tokens.",
            )
            parser.add_argument(
                f"--exclude-{kind}", type=_csv, metavar="A,B",
                help=f"These request {kind} stay out of session tokens.",
            )
        parser.add_argument(
            "--session-ids", choices=("unsigned", "signed", "external-signed"),
            help="unsigned: any id; signed: ids must carry a signature; external-signed: signed, and pages "
            "must bring an id (the server generates none). Default: signed unless DEBUG.",
        )
        parser.add_argument(
            "--auth-module", help=argparse.SUPPRESS,
        )
        parser.add_argument("--cookie-secret", help=argparse.SUPPRESS)
        parser.add_argument("--disable-index", action="store_true", help="Serve no index page at /.")
        parser.add_argument(
            "--disable-index-redirect", action="store_true",
            help="Show the index even when only one app is served.",
        )
        parser.add_argument("--index", metavar="TEMPLATE", help="A Jinja template file for the index page.")
        parser.add_argument(
            "--index-titles", nargs="+", metavar="NAME=TITLE", type=_index_title, action=_StoreDict,
            help="Titles to show for apps on the index page instead of their names (panel serve's flag).",
        )
        parser.add_argument(
            "--stats-log-frequency", type=int, metavar="MILLISECONDS",
            help="Milliseconds between log lines with session counts per app, as in bokeh serve (0: never).",
        )
        parser.add_argument(
            "--mem-log-frequency", type=int, metavar="MILLISECONDS",
            help="Milliseconds between log lines with the server's memory use, as in bokeh serve (0: never).",
        )
        parser.add_argument(
            "--num-procs", type=int, default=1, metavar="N",
            help="Start N server processes sharing one listening socket (needs the Redis channel layer); "
            "0: one per CPU core.",
        )
        parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # a worker of --num-procs
        parser.add_argument("--no-static", action="store_true", help="Do not serve static files (BokehJS) from runbokeh.")
        add_drain_timeout_argument(parser)

    # -- options -> overrides ------------------------------------------------------

    def load_config(self, path: str | None) -> dict[str, Any]:
        """--use-config: load the YAML file with bokeh's own loader, as ``bokeh serve`` does.

        Loading it into bokeh's settings makes the keys bokeh's code reads itself (resources,
        minified, ico_path, validation_level, ...) take effect in this process the way they
        would under bokeh serve; reloaded and --num-procs processes load it again (their
        argv has the flag). The keys our server reads are mapped like their flags: TLS, ico_path
        and xsrf_cookies through bokeh's settings (serve_options), the BOKEHSERVE ones in
        _config_overrides, auth_module/cookie_secret refused, py_log_level as --log-level.
        """
        if not path:
            return {}
        from bokeh.settings import settings as bokeh_env_settings

        try:
            bokeh_env_settings.load_config(path)
        except RuntimeError as exc:
            raise CommandError(
                f"--use-config {path}: {exc}. It must be a readable YAML file of 'name: value' lines "
                "(bokeh settings, e.g. 'ssl_certfile: /etc/ssl/bokeh.pem')."
            ) from exc
        # bokeh stores whatever the YAML holds; its own lookups need a mapping (an empty
        # file loads as None), so anything else is reset before it breaks them later.
        config = bokeh_env_settings._config_override
        if config is None:
            bokeh_env_settings._config_override = config = {}
        if not isinstance(config, dict):
            bokeh_env_settings._config_override = {}
            raise CommandError(f"--use-config {path}: expected 'name: value' lines, found a {type(config).__name__}.")
        return dict(config)

    def _log_config(self, path: str, config: dict[str, Any]) -> None:
        from bokeh.settings import PrioritizedSetting, settings as bokeh_env_settings

        logger.info("Using override config file: %s", path)
        known = {
            setting.name for setting in vars(type(bokeh_env_settings)).values() if isinstance(setting, PrioritizedSetting)
        }
        unknown = sorted(set(config) - known)
        if unknown:
            # bokeh ignores them too; say so, since serve options (port, address, ...) are not
            # settings and a file holding them would otherwise look like it was obeyed.
            logger.warning(
                "--use-config %s: ignoring %s: not bokeh settings (give serve options such as --port as "
                "flags; the file takes bokeh settings such as ssl_certfile, ico_path, secret_key)",
                path, ", ".join(map(repr, unknown)),
            )

    def build_overrides(self, options: dict[str, Any], config: dict[str, Any] | None = None) -> dict[str, Any]:
        if config is None:
            config = self.load_config(options.get("use_config"))
        paths = registry.expand_app_paths(options["apps"], use_glob=options["glob"])
        extra_apps: dict[str, Any] = {}
        for app_path in paths:
            if not os.path.exists(app_path):
                raise CommandError(f"Bokeh app path {app_path!r} does not exist.")
            name = registry.app_name_for_path(app_path)
            if name in extra_apps:
                raise CommandError(f"Two apps would be served at /{name}; rename one of them.")
            extra_apps[name] = {"app": os.path.abspath(app_path), "args": list(options["app_args"])}
        registry.refuse_shadowed_apps(extra_apps)
        overrides: dict[str, Any] = {"EXTRA_APPS": extra_apps}
        origins = list(options["allow_websocket_origin"])
        if not origins and not options["unix_socket"]:
            # As bokeh serve: by default the page's own address may open WebSockets.
            origins = [f"localhost:{options['port']}", f"127.0.0.1:{options['port']}"]
            if options["address"] not in ("127.0.0.1", "localhost", "0.0.0.0", "::"):
                origins.append(f"{options['address']}:{options['port']}")
        overrides["EXTRA_ORIGINS"] = origins
        mapping = {
            "prefix": "PREFIX",
            "check_unused_sessions": "CHECK_UNUSED_SESSIONS",
            "unused_session_lifetime": "UNUSED_SESSION_LIFETIME",
            "keep_alive": "KEEP_ALIVE",
            "websocket_max_message_size": "WEBSOCKET_MAX_MESSAGE_SIZE",
            "session_token_expiration": "SESSION_TOKEN_EXPIRATION",
            "include_headers": "INCLUDE_HEADERS",
            "exclude_headers": "EXCLUDE_HEADERS",
            "include_cookies": "INCLUDE_COOKIES",
            "exclude_cookies": "EXCLUDE_COOKIES",
            "index": "INDEX_TEMPLATE",
            "index_titles": "INDEX_TITLES",
            "drain_timeout": "DRAIN_TIMEOUT",
        }
        # bokeh serve's log frequencies are milliseconds; the settings are seconds.
        for option, key in (("stats_log_frequency", "STATS_LOG_FREQUENCY"), ("mem_log_frequency", "MEM_LOG_FREQUENCY")):
            if options.get(option) is not None:
                overrides[key] = _milliseconds_to_seconds(option, options[option])
        # Settings from --use-config first, so that flags (below) win, as under bokeh serve.
        overrides.update(_config_overrides(config, options.get("use_config")))
        for option, key in mapping.items():
            if options.get(option) is not None:
                overrides[key] = options[option]
        if options["auth_module"] or config.get("auth_module"):
            raise CommandError(
                "--auth-module is not supported: sign-in is Django's here. Protect apps with an access policy "
                "instead, e.g. BOKEHSERVE['APPS']['myapp'] = {'app': ..., 'access': 'login'} (see docs/security.md)."
            )
        if options["cookie_secret"] or config.get("cookie_secret"):
            # Refused rather than ignored: a secret handed over for a purpose should not be
            # dropped silently. The environment variable only gets a warning (inner_run), as
            # it may be left over in an environment that is otherwise fine.
            raise CommandError(
                "--cookie-secret is not needed: Django's SECRET_KEY signs cookies (set_signed_cookie / "
                "get_signed_cookie), and session tokens are signed with BOKEHSERVE['SECRET_KEY'] (derived "
                "from SECRET_KEY by default). Remove the flag (or cookie_secret from the --use-config file)."
            )
        if options["session_ids"]:
            overrides["SIGN_SESSIONS"] = options["session_ids"] != "unsigned"
            overrides["GENERATE_SESSION_IDS"] = options["session_ids"] != "external-signed"
        if options["disable_index"]:
            overrides["DISABLE_INDEX"] = True
        if options["disable_index_redirect"]:
            overrides["DISABLE_INDEX_REDIRECT"] = True
        return overrides

    # -- running -----------------------------------------------------------------

    def handle(self, *args: Any, **options: Any) -> None:
        if options["autoreload"]:
            options["dev"] = True
        config = self.load_config(options["use_config"])
        # Logging first, so that what the checks below log goes where --log-file says.
        self._configure_logging(
            options["log_level"] or _config_log_level(config.get("py_log_level")) or "info",
            options["log_format"] or _LOG_FORMAT,
            options["log_file"],
        )
        if options["use_config"]:
            self._log_config(options["use_config"], config)
        try:
            overrides = self.build_overrides(options, config)
        except InvalidAppSpec as exc:
            raise CommandError(str(exc)) from exc
        os.environ[OVERRIDES_ENV] = json.dumps(overrides)
        bokeh_settings.reload()
        registry.reset()
        self.server_options = self.serve_options(options)
        if not getattr(settings, "ASGI_APPLICATION", None):
            raise CommandError("You have not set ASGI_APPLICATION, which is needed to run the server.")
        if not settings.DEBUG and not settings.ALLOWED_HOSTS:
            raise CommandError(
                "ALLOWED_HOSTS is empty while DEBUG is False, so every request would be refused. "
                "Set ALLOWED_HOSTS to the names this server answers to."
            )
        if options["num_procs"] == 0:
            # As bokeh serve: 0 means one process per core.
            options["num_procs"] = os.cpu_count() or 1
        if options["num_procs"] > 1:
            self.run_workers(options)
            return
        if options["dev"]:
            autoreload.autoreload_started.connect(self._watch_app_files)
            autoreload.run_with_reloader(self.inner_run, **options)
        else:
            self.inner_run(**options)

    def _configure_logging(self, level_name: str, log_format: str, log_file: str | None) -> None:
        level = logging.DEBUG if level_name == "trace" else getattr(logging, level_name.upper())
        explicit = bool(log_file) or log_format != _LOG_FORMAT
        handler: logging.Handler
        if log_file:
            try:
                handler = logging.FileHandler(log_file)
            except OSError as exc:
                raise CommandError(f"--log-file {log_file}: cannot open it for writing ({exc}).") from exc
        else:
            handler = logging.StreamHandler()
        try:
            handler.setFormatter(logging.Formatter(log_format))
            handler.format(logging.makeLogRecord({"msg": "check"}))
        except (ValueError, KeyError, TypeError) as exc:
            raise CommandError(
                f"--log-format {log_format!r} is not a Python logging format ({exc}); "
                "e.g. '%(asctime)s %(levelname)s %(message)s'."
            ) from exc
        handler._runbokeh = True  # type: ignore[attr-defined]
        if explicit:
            # bokeh logs through a stderr handler of its own (bokeh.util.logconfig); asked for
            # a file or format, bokeh's messages go there too, as bokeh serve's basicConfig does.
            from bokeh.util import logconfig

            if logconfig.default_handler is not None:
                logging.getLogger("bokeh").removeHandler(logconfig.default_handler)
        root_configured = bool(logging.getLogger().handlers)
        for name in ("bokehserve_django", "bokeh"):
            log = logging.getLogger(name)
            for old in [h for h in log.handlers if getattr(h, "_runbokeh", False)]:
                log.removeHandler(old)  # ours from an earlier run in this process (--dev, tests)
                old.close()
            log.setLevel(level if name == "bokehserve_django" else max(level, logging.WARNING))
            # Without a file or format asked for, the project's LOGGING (or bokeh's own
            # handler) stays in charge where it configured something.
            if explicit or (not log.handlers and not root_configured):
                log.addHandler(handler)

    def serve_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Server kwargs for bokeh serve's TLS, proxy and compression flags; checks the Django-side ones.

        Values come with bokeh's own precedence (flag, then --use-config file, then BOKEH_*
        variable), read through bokeh's settings as bokeh serve reads them.
        """
        from bokeh.settings import settings as bokeh_env_settings

        kwargs: dict[str, Any] = {}
        certfile = bokeh_env_settings.ssl_certfile(options["ssl_certfile"])
        keyfile = bokeh_env_settings.ssl_keyfile(options["ssl_keyfile"])
        if keyfile and not certfile:
            raise CommandError("--ssl-keyfile (or BOKEH_SSL_KEYFILE) needs --ssl-certfile (or BOKEH_SSL_CERTFILE) too.")
        if certfile:
            if options["unix_socket"]:
                raise CommandError(
                    "--ssl-certfile cannot be combined with --unix-socket: a unix socket is for a proxy "
                    "on the same machine, which terminates TLS itself."
                )
            kwargs["tls_context_factory"] = tls_context_factory(certfile, keyfile, bokeh_env_settings.ssl_password())
        if options["use_xheaders"]:
            kwargs["use_xheaders"] = True
        for name in ("websocket_compression_level", "websocket_compression_mem_level"):
            if options[name] is not None:
                kwargs[name] = options[name]
        try:
            # Only a true flag is an immediate value: False would hide BOKEH_XSRF_COOKIES.
            xsrf = bokeh_env_settings.xsrf_cookies(True if options["enable_xsrf_cookies"] else None)
        except ValueError as exc:
            raise CommandError(f"BOKEH_XSRF_COOKIES: {exc}") from exc
        if xsrf:
            self._check_csrf_middleware()
        if os.environ.get("BOKEH_COOKIE_SECRET"):
            logger.warning(
                "BOKEH_COOKIE_SECRET is set but not used: Django's SECRET_KEY signs cookies here "
                "(set_signed_cookie / get_signed_cookie); unset the variable to silence this."
            )
        if options["ico_path"]:
            value = options["ico_path"]
            # A user-set value outranks a --use-config file and BOKEH_ICO_PATH, as a flag
            # does in bokeh serve; views.favicon reads this setting on each request.
            bokeh_env_settings.ico_path.set_value(
                value if value.lower() in ("none", "default") else os.path.abspath(value)
            )
        try:
            ico_path = bokeh_env_settings.ico_path()
        except ValueError as exc:
            raise CommandError(f"--ico-path / BOKEH_ICO_PATH: {exc}; give a .ico file or 'none'.") from exc
        self.no_favicon = ico_path == "none"
        if not self.no_favicon and not os.path.isfile(ico_path):
            raise CommandError(f"The favicon {ico_path} (--ico-path / BOKEH_ICO_PATH) is not a file.")
        return kwargs

    def _check_csrf_middleware(self) -> None:
        from django.middleware.csrf import CsrfViewMiddleware
        from django.utils.module_loading import import_string

        def is_csrf(path: str) -> bool:
            try:
                middleware = import_string(path)
            except ImportError:
                return False
            return isinstance(middleware, type) and issubclass(middleware, CsrfViewMiddleware)

        if not any(is_csrf(path) for path in settings.MIDDLEWARE):
            raise CommandError(
                "--enable-xsrf-cookies (or BOKEH_XSRF_COOKIES) asks for XSRF protection, but "
                "django.middleware.csrf.CsrfViewMiddleware is not in MIDDLEWARE. Add it: Django's CSRF "
                "middleware is what protects POST/PUT/PATCH/DELETE here."
            )
        logger.info(
            "--enable-xsrf-cookies: nothing to switch on; Django's CsrfViewMiddleware (in MIDDLEWARE) "
            "checks a CSRF token on every POST/PUT/PATCH/DELETE (cookie settings: CSRF_COOKIE_*)."
        )

    def _watch_app_files(self, sender: Any, **kwargs: Any) -> None:
        for entry in registry.registered_apps().values():
            for path in entry.source_paths:
                if os.path.isdir(path):
                    sender.watch_dir(Path(path), "**/*")
                else:
                    sender.extra_files.add(Path(path))

    def inner_run(self, **options: Any) -> None:
        from bokehserve_django.server import BokehDaphneServer

        self.check(display_num_errors=False)
        apps = registry.registered_apps()
        if not apps:
            raise CommandError("No Bokeh apps to serve: pass APP paths or set BOKEHSERVE['APPS'].")
        self.warm = options["warm"]
        if options["global_loading_spinner"]:
            from bokehserve_django import panel

            try:
                panel.use_global_loading_spinner()
            except PanelNotInstalled as exc:
                raise CommandError(str(exc)) from exc
        application = self.get_application(options)
        endpoints = self.endpoints(options)
        base_url = self.base_url(options)
        for name, entry in sorted(apps.items()):
            state = "FAILED to load, see above" if entry.load_error else "ready"
            logger.info("Bokeh app %r at %s/%s (%s)", name, base_url, self.app_path(name), state)
        logger.info(
            "Starting Bokeh server (daphne) on %s%s", ", ".join(endpoints),
            " with TLS (HTTPS and WSS)" if "tls_context_factory" in self.server_options else "",
        )
        if options["show"]:
            first = sorted(apps)[0]
            webbrowser.open(f"{base_url}/{self.app_path(first)}")
        server_cls = self.server_cls or BokehDaphneServer
        keep_alive_s = bokeh_settings.KEEP_ALIVE / 1000 if bokeh_settings.KEEP_ALIVE else 10**9
        server = server_cls(
            application=application,
            endpoints=endpoints,
            # Under --dev the server runs in the reloader's thread, where signals cannot be handled.
            signal_handlers=not options["dev"],
            http_timeout=None,
            websocket_timeout=-1,  # Bokeh sessions may stay open for days
            websocket_connect_timeout=30,
            websocket_handshake_timeout=30,
            ping_interval=keep_alive_s,
            ping_timeout=max(keep_alive_s * 2, 30),
            websocket_max_message_size=bokeh_settings.WEBSOCKET_MAX_MESSAGE_SIZE,
            websocket_max_frame_size=bokeh_settings.WEBSOCKET_MAX_MESSAGE_SIZE,
            application_close_timeout=10,
            ready_callable=self._on_ready,
            verbosity=1,
            **self.server_options,
        )
        server.run()

    def _on_ready(self) -> None:
        import asyncio

        from twisted.internet import reactor

        from bokehserve_django.cluster import ensure_started
        from bokehserve_django.sessions import runtime

        async def start() -> None:
            await ensure_started()
            if getattr(self, "warm", False):
                await runtime.warm()

        # Load apps' on_server_loaded hooks and join the cluster at start-up, as bokeh serve
        # loads its apps (callLater runs inside the running asyncio loop, which they need).
        reactor.callLater(0, lambda: asyncio.ensure_future(start()))

    def get_application(self, options: dict[str, Any]) -> Any:
        from channels.routing import get_default_application

        application = get_default_application()
        if not options["no_static"]:
            from bokehserve_django.staticfiles import StaticFilesHandler

            application = StaticFilesHandler(application)
        if options.get("static_dirs"):
            from bokehserve_django.static_dirs import StaticDirs, parse_static_dirs

            taken = {name.split("/")[0] for name in registry.registered_apps()} | registry.RESERVED_NAMES
            try:
                dirs = parse_static_dirs(options["static_dirs"], taken)
            except ValueError as exc:
                raise CommandError(f"--static-dirs: {exc}") from exc
            application = StaticDirs(application, dirs, bokeh_settings.prefix)
            for url, directory in dirs.items():
                logger.info("Serving %s at /%s/", directory, self.app_path(url))
        if getattr(self, "no_favicon", False):
            from django.urls import NoReverseMatch, reverse

            try:
                favicon_path = reverse("bokehserve_django:favicon")
            except NoReverseMatch:  # the project routes our views itself
                favicon_path = "/favicon.ico"
            application = _NoFavicon(application, favicon_path)
        return application

    def run_workers(self, options: dict[str, Any]) -> None:
        """--num-procs N: bind once, then run N runbokeh workers on the inherited socket."""
        import signal
        import socket
        import subprocess

        count = options["num_procs"]
        backend = (getattr(settings, "CHANNEL_LAYERS", {}) or {}).get("default", {}).get("BACKEND", "")
        if "channels_redis" not in backend:
            raise CommandError(
                f"--num-procs {count} needs a channel layer shared by the processes; CHANNEL_LAYERS uses "
                f"{backend or 'nothing'}. Configure channels_redis.core.RedisChannelLayer (the demo does when "
                "REDIS_URL is set), or run one process."
            )
        if options["dev"] or options["unix_socket"]:
            raise CommandError("--num-procs cannot be combined with --dev or --unix-socket.")
        if ":" in options["address"]:
            raise CommandError("--num-procs listens on IPv4 addresses only; use e.g. --address 0.0.0.0.")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((options["address"], options["port"]))
        except OSError as exc:
            raise CommandError(f"Cannot listen on {options['address']}:{options['port']}: {exc}") from exc
        listener.listen(1024)
        listener.set_inheritable(True)
        fd = listener.fileno()
        argv = _without_option(sys.argv, "--num-procs")
        metrics.prepare_workers()  # one aggregated /metrics: the workers share a metric-files directory
        workers = [
            subprocess.Popen([sys.executable, *argv, "--fd", str(fd)], pass_fds=(fd,)) for _ in range(count)
        ]
        # The workers hold their own copies of the socket. Ours would keep it listening after
        # every worker stopped listening on SIGTERM (the kernel would go on queueing
        # connections nobody accepts, instead of refusing them), so close it now.
        listener.close()
        metrics.watch_workers(workers)
        logger.info("Started %d worker processes (pids %s) on %s", count, [w.pid for w in workers], self.base_url(options))

        def forward(signum: int, frame: Any) -> None:
            for worker in workers:
                if worker.poll() is None:
                    worker.send_signal(signum)

        # Each worker drains on the first signal and cuts its drain short on a second; this
        # process waits for all of them (wait() resumes after a handler runs).
        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        codes = [worker.wait() for worker in workers]
        if any(codes):
            raise CommandError(f"Worker processes exited with {codes}.")

    def endpoints(self, options: dict[str, Any]) -> list[str]:
        if options.get("fd") is not None:
            return [f"fd:fileno={options['fd']}"]
        if options["unix_socket"]:
            return [f"unix:{options['unix_socket']}"]
        address = options["address"].replace(":", r"\:")
        return [f"tcp:port={options['port']}:interface={address}"]

    def base_url(self, options: dict[str, Any]) -> str:
        if options["unix_socket"]:
            return f"unix:{options['unix_socket']}"
        host = "localhost" if options["address"] in ("127.0.0.1", "0.0.0.0", "::") else options["address"]
        scheme = "https" if "tls_context_factory" in getattr(self, "server_options", {}) else "http"
        return f"{scheme}://{host}:{options['port']}"

    def app_path(self, name: str) -> str:
        prefix = bokeh_settings.prefix
        return f"{prefix}/{name}" if prefix else name


def tls_context_factory(certfile: str, keyfile: str | None, password: str | None) -> Any:
    """A Twisted TLS context for ``certfile`` (PEM, may hold the chain and the key) and ``keyfile``.

    Loaded here, not through daphne's ``ssl:`` endpoint string, because that string has
    no way to give the key's password (BOKEH_SSL_PASSWORD); loading at start-up also
    reports a wrong path, password or key at once instead of when daphne listens.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from twisted.internet.ssl import CertificateOptions

    def read(path: str, what: str) -> bytes:
        try:
            with open(path, "rb") as file:
                return file.read()
        except OSError as exc:
            raise CommandError(f"Cannot read the TLS {what} {path}: {exc.strerror}.") from exc

    cert_data = read(certfile, "certificate (--ssl-certfile / BOKEH_SSL_CERTFILE)")
    key_path = keyfile or certfile
    key_data = read(key_path, "key (--ssl-keyfile / BOKEH_SSL_KEYFILE)") if keyfile else cert_data
    try:
        chain = x509.load_pem_x509_certificates(cert_data)
    except ValueError as exc:
        raise CommandError(f"{certfile} holds no PEM certificate (-----BEGIN CERTIFICATE-----): {exc}") from exc
    try:
        key = serialization.load_pem_private_key(key_data, password.encode() if password else None)
    except TypeError as exc:  # encrypted without a password, or a password for a plain key
        hint = ("set BOKEH_SSL_PASSWORD to its password" if not password
                else "it is not encrypted: unset BOKEH_SSL_PASSWORD")
        raise CommandError(f"Cannot load the TLS key in {key_path}: {exc}; {hint}.") from exc
    except ValueError as exc:
        more = " (--ssl-certfile without --ssl-keyfile needs the key in the same file)" if not keyfile else ""
        raise CommandError(
            f"Cannot load the TLS key in {key_path}{more}: {exc}. Is BOKEH_SSL_PASSWORD right?"
        ) from exc
    # cryptography objects, not pyOpenSSL's PKey/X509: pyOpenSSL 24+ deprecates those, and
    # CertificateOptions hands whatever it gets to the OpenSSL context.
    options = CertificateOptions(privateKey=key, certificate=chain[0], extraCertChain=chain[1:])
    try:
        options.getContext()  # checks that the key belongs to the certificate
    except Exception as exc:
        raise CommandError(f"The TLS key in {key_path} does not match the certificate in {certfile}: {exc}") from exc
    return options


class _NoFavicon:
    """``--ico-path none``: 404 at /favicon.ico, as bokeh serve answers then.

    views.favicon always serves an icon (it opens bokeh's ico_path setting), so the run
    answers in front of it instead.
    """

    def __init__(self, application: Any, path: str) -> None:
        self.application = application
        self.path = path

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == self.path:
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
            await send({"type": "http.response.body", "body": b"No favicon (--ico-path none).\n"})
            return
        await self.application(scope, receive, send)


def _panel_flag_refusal(args: list[str]) -> str | None:
    """What to say about the first of panel serve's flags refused here (before --args), or None."""
    for arg in args:
        if arg == "--args":
            return None  # what follows is the apps'
        flag = arg.split("=", 1)[0]
        if flag == "--root-path":
            return (
                "--root-path is not needed: give the URL prefix the apps are served under with --prefix "
                "(or BOKEHSERVE['PREFIX']); behind a proxy that strips a path, set FORCE_SCRIPT_NAME."
            )
        if flag == "--cookie-path":
            return (
                "--cookie-path is not supported: Django sets the sign-in cookies here; use SESSION_COOKIE_PATH "
                "and CSRF_COOKIE_PATH in settings."
            )
        if flag in _PANEL_FLAG_ADVICE:
            return f"{flag} (a panel serve flag) is not supported: {_PANEL_FLAG_ADVICE[flag]}."
        if flag in _PANEL_AUTH_FLAGS:
            return (
                f"{flag} is not supported: sign-in is Django's here. Protect an app with an access policy, "
                "e.g. BOKEHSERVE['APPS']['myapp'] = {'app': ..., 'access': 'login'} (see docs/security.md), with "
                "Django's login views for passwords or django-allauth for OAuth providers (GitHub, Google, ...). "
                "Panel apps see the signed-in user as pn.state.user (see docs/panel.md)."
            )
    return None


def _milliseconds_to_seconds(option: str, milliseconds: int) -> int:
    """A log period in whole seconds (at least 1; 0 stays "never")."""
    flag = "--" + option.replace("_", "-")
    if milliseconds < 0:
        raise CommandError(f"{flag} must be a number of milliseconds, 0 or more (0: never).")
    return 0 if milliseconds == 0 else max(1, round(milliseconds / 1000))


def _config_overrides(config: dict[str, Any], path: str | None) -> dict[str, Any]:
    """The BOKEHSERVE overrides that a --use-config file's keys stand for."""
    overrides: dict[str, Any] = {}
    for name, key, convert in (
        ("secret_key", "SECRET_KEY", str),
        ("sign_sessions", "SIGN_SESSIONS", _config_bool),
        ("allowed_ws_origin", "ALLOWED_ORIGINS", _config_list),
        ("resources", "RESOURCES", str),
        ("minified", "MINIFIED", _config_bool),
    ):
        if config.get(name) is not None:
            try:
                overrides[key] = convert(config[name])
            except ValueError as exc:
                raise CommandError(f"--use-config {path}: {name}: {exc}") from exc
    return overrides


def _config_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    from bokeh.settings import convert_bool

    return convert_bool(str(value))


def _config_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return _csv(value)
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    raise ValueError(f"expected a list of host[:port] strings, got {value!r}")


def _config_log_level(value: Any) -> str | None:
    """A --use-config py_log_level as a --log-level choice (bokeh also spells warn and fatal)."""
    if value is None:
        return None
    name = {"warn": "warning", "fatal": "critical"}.get(str(value).lower(), str(value).lower())
    if name == "none":
        return "critical"
    if name not in _LOG_LEVELS:
        raise CommandError(f"--use-config: py_log_level {value!r} is not one of {', '.join(_LOG_LEVELS)}.")
    return name


def _without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE``."""
    result: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            result.append(arg)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit("Run this through 'python manage.py runbokeh'.")

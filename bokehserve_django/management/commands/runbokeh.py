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

from bokehserve_django import registry
from bokehserve_django.conf import OVERRIDES_ENV, bokeh_settings
from bokehserve_django.exceptions import InvalidAppSpec
from bokehserve_django.server import add_drain_timeout_argument

logger = logging.getLogger("bokehserve_django.runbokeh")

_LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical")


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


class Command(BaseCommand):
    help = "Serve Bokeh applications with daphne (like 'bokeh serve', inside this Django project)."

    #: The daphne Server class; tests swap in a recorder (as daphne's test_cli does).
    server_cls: Any = None
    # Checks run in inner_run, after our flags are in place: run earlier, they would import
    # the URLconf before --prefix is known.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "apps", nargs="*", metavar="APP",
            help="Bokeh apps to serve besides BOKEHSERVE['APPS']: .py scripts, directories or .ipynb notebooks.",
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
        parser.add_argument("--log-level", choices=_LOG_LEVELS, default="info", help="Level of the server log.")
        parser.add_argument("--dev", action="store_true", help="Reload the server when app or project files change.")
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
            "--stats-log-frequency", type=int, metavar="SECONDS",
            help="Seconds between log lines with session counts per app (0: never).",
        )
        parser.add_argument(
            "--mem-log-frequency", type=int, metavar="SECONDS",
            help="Seconds between log lines with the server's memory use (0: never).",
        )
        parser.add_argument(
            "--num-procs", type=int, default=1, metavar="N",
            help="Start N server processes sharing one listening socket (needs the Redis channel layer).",
        )
        parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # a worker of --num-procs
        parser.add_argument("--no-static", action="store_true", help="Do not serve static files (BokehJS) from runbokeh.")
        add_drain_timeout_argument(parser)

    # -- options -> overrides ------------------------------------------------------

    def build_overrides(self, options: dict[str, Any]) -> dict[str, Any]:
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
            "stats_log_frequency": "STATS_LOG_FREQUENCY",
            "mem_log_frequency": "MEM_LOG_FREQUENCY",
            "drain_timeout": "DRAIN_TIMEOUT",
        }
        for option, key in mapping.items():
            if options.get(option) is not None:
                overrides[key] = options[option]
        if options["auth_module"]:
            raise CommandError(
                "--auth-module is not supported: sign-in is Django's here. Protect apps with an access policy "
                "instead, e.g. BOKEHSERVE['APPS']['myapp'] = {'app': ..., 'access': 'login'} (see docs/security.md)."
            )
        if options["cookie_secret"]:
            raise CommandError(
                "--cookie-secret is not needed: Django's SECRET_KEY signs cookies, and session tokens are "
                "signed with BOKEHSERVE['SECRET_KEY'] (derived from SECRET_KEY by default)."
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
        try:
            overrides = self.build_overrides(options)
        except InvalidAppSpec as exc:
            raise CommandError(str(exc)) from exc
        os.environ[OVERRIDES_ENV] = json.dumps(overrides)
        bokeh_settings.reload()
        registry.reset()
        if not getattr(settings, "ASGI_APPLICATION", None):
            raise CommandError("You have not set ASGI_APPLICATION, which is needed to run the server.")
        if not settings.DEBUG and not settings.ALLOWED_HOSTS:
            raise CommandError(
                "ALLOWED_HOSTS is empty while DEBUG is False, so every request would be refused. "
                "Set ALLOWED_HOSTS to the names this server answers to."
            )
        self._configure_logging(options["log_level"])
        if options["num_procs"] > 1:
            self.run_workers(options)
            return
        if options["dev"]:
            autoreload.autoreload_started.connect(self._watch_app_files)
            autoreload.run_with_reloader(self.inner_run, **options)
        else:
            self.inner_run(**options)

    def _configure_logging(self, level_name: str) -> None:
        level = logging.DEBUG if level_name == "trace" else getattr(logging, level_name.upper())
        for name in ("bokehserve_django", "bokeh"):
            log = logging.getLogger(name)
            log.setLevel(level if name == "bokehserve_django" else max(level, logging.WARNING))
            if not log.handlers and not logging.getLogger().handlers:
                handler = logging.StreamHandler()
                handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
                log.addHandler(handler)

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
        application = self.get_application(options)
        endpoints = self.endpoints(options)
        base_url = self.base_url(options)
        for name, entry in sorted(apps.items()):
            state = "FAILED to load, see above" if entry.load_error else "ready"
            logger.info("Bokeh app %r at %s/%s (%s)", name, base_url, self.app_path(name), state)
        logger.info("Starting Bokeh server (daphne) on %s", ", ".join(endpoints))
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
        )
        server.run()

    def _on_ready(self) -> None:
        import asyncio

        from twisted.internet import reactor

        from bokehserve_django.cluster import ensure_started

        # Load apps' on_server_loaded hooks and join the cluster at start-up, as bokeh serve
        # loads its apps (callLater runs inside the running asyncio loop, which they need).
        reactor.callLater(0, lambda: asyncio.ensure_future(ensure_started()))

    def get_application(self, options: dict[str, Any]) -> Any:
        from channels.routing import get_default_application

        application = get_default_application()
        if not options["no_static"]:
            from bokehserve_django.staticfiles import StaticFilesHandler

            application = StaticFilesHandler(application)
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
        workers = [
            subprocess.Popen([sys.executable, *argv, "--fd", str(fd)], pass_fds=(fd,)) for _ in range(count)
        ]
        # The workers hold their own copies of the socket. Ours would keep it listening after
        # every worker stopped listening on SIGTERM (the kernel would go on queueing
        # connections nobody accepts, instead of refusing them), so close it now.
        listener.close()
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
        return f"http://{host}:{options['port']}"

    def app_path(self, name: str) -> str:
        prefix = bokeh_settings.prefix
        return f"{prefix}/{name}" if prefix else name


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

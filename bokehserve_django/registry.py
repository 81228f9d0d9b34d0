"""Turns app specs from settings and runbokeh arguments into named Bokeh Application objects.

Knows nothing of HTTP, WebSockets or the channel layer.
"""

from __future__ import annotations

import glob
import inspect
import logging
import os
import re
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bokeh.application import Application
from bokeh.application.handlers.directory import DirectoryHandler
from bokeh.application.handlers.document_lifecycle import DocumentLifecycleHandler
from bokeh.application.handlers.function import FunctionHandler
from bokeh.application.handlers.lifecycle import LifecycleHandler
from bokeh.application.handlers.notebook import NotebookHandler
from bokeh.application.handlers.script import ScriptHandler
from bokeh.application.handlers.server_request_handler import ServerRequestHandler
from bokeh.document import Document
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from . import hooks, panel
from .access import PUBLIC, AccessPolicy, parse_policy
from .conf import bokeh_settings
from .exceptions import AppLoadError, AppNotRegistered, InvalidAppSpec, PanelNotInstalled

__all__ = (
    "RegisteredApp",
    "app_name_for_path",
    "expand_app_paths",
    "get_app",
    "refuse_shadowed_apps",
    "registered_apps",
    "reset",
)

logger = logging.getLogger(__name__)

#: URL names: path segments of letters, digits, "_", "-" and "." (no leading dot).
APP_NAME_PATTERN = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_\-.]*(/[A-Za-z0-9_\-][A-Za-z0-9_\-.]*)*")
#: Names that would shadow the server's own URLs.
RESERVED_NAMES = {"static", "ws", "autoload.js", "metadata", "bokehserve-stats", "favicon.ico", "healthz", "readyz", "metrics", "components"}


@dataclass
class RegisteredApp:
    """One application as the server sees it: its URL name, how it was given, and its loaded state."""

    name: str
    spec: Any
    argv: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    application: Application | None = None
    load_error: AppLoadError | None = None
    access: AccessPolicy = PUBLIC

    @property
    def static_path(self) -> str | None:
        """The directory app's ``static/`` folder, if any."""
        return self.application.static_path if self.application is not None else None

    @property
    def source_paths(self) -> list[str]:
        """Files and folders whose changes should reload the server under --dev."""
        if isinstance(self.spec, str | os.PathLike) and os.path.exists(self.spec):
            return [os.path.abspath(self.spec)]
        return []

    def check_loaded(self) -> Application:
        """The Application, or raise AppLoadError if it failed to load."""
        if self.load_error is not None:
            raise self.load_error
        assert self.application is not None
        return self.application


_lock = threading.Lock()
_apps: dict[str, RegisteredApp] | None = None


def registered_apps() -> dict[str, RegisteredApp]:
    """All apps from BOKEHSERVE["APPS"] (plus runbokeh's), loaded once per process."""
    global _apps
    apps = _apps
    if apps is None:
        with _lock:
            if _apps is None:
                _apps = _load_all(bokeh_settings.APPS)
            apps = _apps
    return apps


def get_app(name: str) -> RegisteredApp:
    """The registered app called ``name``; raise AppNotRegistered otherwise."""
    try:
        return registered_apps()[name]
    except KeyError:
        raise AppNotRegistered(name) from None


def reset() -> None:
    """Forget loaded apps (settings changed; tests)."""
    global _apps
    with _lock:
        _apps = None


def _load_all(specs: Mapping[str, Any]) -> dict[str, RegisteredApp]:
    apps: dict[str, RegisteredApp] = {}
    for raw_name, raw_spec in specs.items():
        name = str(raw_name).strip("/")
        if not APP_NAME_PATTERN.fullmatch(name) or name in RESERVED_NAMES:
            raise InvalidAppSpec(
                f"BOKEHSERVE['APPS'] key {raw_name!r} is not a usable URL name; use letters, digits, '_', '-', "
                f"'.' and '/' between segments, and none of {sorted(RESERVED_NAMES)}."
            )
        spec, argv, options = _unpack(name, raw_spec)
        access = parse_policy(
            options.pop("access", bokeh_settings.DEFAULT_ACCESS), f"BOKEHSERVE['APPS'][{name!r}]['access']"
        )
        if options:
            raise InvalidAppSpec(f"BOKEHSERVE['APPS'][{name!r}] has unknown keys {sorted(options)}; use 'app', 'args', 'access'.")
        entry = RegisteredApp(name=name, spec=spec, argv=argv, options=options, access=access)
        try:
            application = build_application(spec, argv)
        except PanelNotInstalled as exc:
            # One app this site cannot serve yet: the others still run.
            entry.load_error = AppLoadError(name, str(exc))
            logger.error("Bokeh application %r cannot load: %s", name, exc)
        except InvalidAppSpec:
            raise
        except Exception as exc:
            details = traceback.format_exc()
            entry.load_error = AppLoadError(name, details)
            logger.error("Bokeh application %r failed to load: %s\n%s", name, exc, details)
        else:
            # bokeh's code handlers compile at construction and record a SyntaxError instead
            # of raising it.
            failed = [h for h in application.handlers if h.failed]
            if failed:
                details = f"{failed[0].error}\n{failed[0].error_detail or ''}"
                entry.load_error = AppLoadError(name, details)
                logger.error("Bokeh application %r failed to load:\n%s", name, details)
            else:
                _add_document_lifecycle(application)
                hooks.install(application, name, serial=panel.is_panel_application(application))
                entry.application = application
        apps[name] = entry
    return apps


class DocumentLifecycle(LifecycleHandler):
    """Runs the callbacks an app registered with ``Document.on_session_destroyed``.

    bokeh serve adds bokeh's DocumentLifecycleHandler to every app; ours does the same
    without its per-session ``gc.collect()`` (the session runtime collects once per sweep).
    """

    def __init__(self) -> None:
        super().__init__()
        self._on_session_destroyed = _run_document_destroyed_callbacks


def _run_document_destroyed_callbacks(session_context: Any) -> None:
    document = session_context._document
    callbacks, document.session_destroyed_callbacks = document.session_destroyed_callbacks, set()
    for callback in callbacks:
        try:
            result = callback(session_context)
            if inspect.isawaitable(result):  # an async def callback: awaited on the server's loop
                hooks.wait_from_worker(result, f"Document.on_session_destroyed callback {callback!r}")
        except Exception:
            logger.error("Document.on_session_destroyed callback %r failed", callback, exc_info=True)


def _add_document_lifecycle(application: Application) -> None:
    if not any(isinstance(h, DocumentLifecycle | DocumentLifecycleHandler) for h in application.handlers):
        application.add(DocumentLifecycle())


def _unpack(name: str, raw_spec: Any) -> tuple[Any, list[str], dict[str, Any]]:
    if isinstance(raw_spec, Mapping):
        options = dict(raw_spec)
        if "app" not in options:
            raise InvalidAppSpec(f"BOKEHSERVE['APPS'][{name!r}] is a dict without an 'app' key.")
        spec = options.pop("app")
        argv = options.pop("args", [])
        if isinstance(argv, str) or not isinstance(argv, list | tuple):
            raise InvalidAppSpec(f"BOKEHSERVE['APPS'][{name!r}]['args'] must be a list of strings.")
        return spec, [str(a) for a in argv], options
    return raw_spec, [], {}


def build_application(spec: Any, argv: list[str] | None = None) -> Application:
    """Build a bokeh Application from a path, an import string, a function(doc) or an Application.

    Panel apps (the rule is in bokehserve_django/panel/__init__.py) are built by Panel's builder.
    """
    argv = list(argv or [])
    if isinstance(spec, Application):
        return spec
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and _looks_like_path(spec)):
        return _application_for_path(os.fspath(spec), argv)
    if isinstance(spec, str):
        try:
            spec = import_string(spec.replace(":", "."))
        except ModuleNotFoundError as exc:
            if panel.names_panel(exc.name):
                raise PanelNotInstalled(f"The Panel app {spec!r}") from exc
            raise InvalidAppSpec(
                f"Cannot use {spec!r} as a Bokeh app: it is neither an existing file or directory nor an "
                f"importable 'module.function' ({exc})."
            ) from exc
        except ImportError as exc:
            raise InvalidAppSpec(
                f"Cannot use {spec!r} as a Bokeh app: it is neither an existing file or directory nor an "
                f"importable 'module.function' ({exc})."
            ) from exc
        if isinstance(spec, Application):
            return spec
    if panel.is_panel_spec(spec):
        return panel.build_panel_application(spec, argv)
    if callable(spec):
        return Application(FunctionHandler(_sync_document_function(spec)))
    raise InvalidAppSpec(
        f"Cannot use {spec!r} as a Bokeh app; give a path, a 'module.function' string, a function(doc), "
        "a bokeh.application.Application, or a Panel object or function (see docs/panel.md)."
    )


def _looks_like_path(spec: str) -> bool:
    return os.path.exists(spec) or spec.endswith((".py", ".ipynb", ".md")) or os.sep in spec


def _application_for_path(path: str, argv: list[str]) -> Application:
    path = os.path.abspath(os.path.expanduser(path))
    if panel.is_panel_spec(path):
        return panel.build_panel_application(path, argv)
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "main.py")) and not os.path.exists(os.path.join(path, "main.ipynb")):
            raise InvalidAppSpec(f"Directory app {path!r} has no main.py (or main.ipynb).")
        return Application(DirectoryAppHandler(filename=path, argv=argv))
    if not os.path.isfile(path):
        raise InvalidAppSpec(f"Bokeh app path {path!r} does not exist.")
    if path.endswith(".ipynb"):
        try:
            import nbconvert  # noqa: F401
        except ImportError as exc:
            raise InvalidAppSpec(
                f"Serving the notebook {path!r} needs nbconvert; install it with 'pip install nbconvert'."
            ) from exc
        return Application(NotebookHandler(filename=path, argv=argv))
    if path.endswith(".py"):
        return Application(ScriptHandler(filename=path, argv=argv))
    raise InvalidAppSpec(
        f"Bokeh app {path!r} is neither a .py script, a .ipynb notebook, a Panel .md file nor a directory."
    )


class DirectoryAppHandler(DirectoryHandler):
    """bokeh's DirectoryHandler, also reading ``process_request`` from ``request_handler.py``.

    The user guide puts ``process_request`` in ``request_handler.py``; bokeh serve 3.9 reads
    it from ``app_hooks.py`` only. Either file may hold it. Both holding it is a start-up
    error (InvalidAppSpec, which ``manage.py check`` reports as E003 and which stops
    ``runbokeh``): which of the two should win would be a guess.
    """

    def __init__(self, *, filename: str, argv: list[str] | None = None) -> None:
        argv = list(argv or [])
        super().__init__(filename=filename, argv=argv)
        self._request_file_handler: ServerRequestHandler | None = None
        request_file = os.path.join(filename, "request_handler.py")
        if not os.path.exists(request_file):
            return
        handler = ServerRequestHandler(filename=request_file, argv=argv, package=self._package)
        self._request_file_handler = handler
        if handler.failed:
            return  # reported through failed/error below
        from bokeh.application.handlers.request_handler import _return_empty

        in_app_hooks = getattr(self._request_handler, "_process_request", _return_empty) is not _return_empty
        in_request_file = handler._process_request is not _return_empty
        if in_app_hooks and in_request_file:
            raise InvalidAppSpec(
                f"Directory app {filename!r} defines process_request in both app_hooks.py and request_handler.py; "
                "keep one of them (the user guide's place is request_handler.py)."
            )
        if in_request_file:
            self._request_handler = handler

    @property
    def failed(self) -> bool:
        request_file = self._request_file_handler
        return super().failed or (request_file is not None and request_file.failed)

    @property
    def error(self) -> str | None:
        request_file = self._request_file_handler
        return super().error or (request_file.error if request_file is not None else None)

    @property
    def error_detail(self) -> str | None:
        request_file = self._request_file_handler
        return super().error_detail or (request_file.error_detail if request_file is not None else None)


def _sync_document_function(func: Callable[..., Any]) -> Callable[[Document], None]:
    """Let FunctionHandler run ``async def modify(doc)`` too (it only calls functions)."""
    if not inspect.iscoroutinefunction(func):
        return func

    def run_async_document_function(doc: Document) -> None:
        from asgiref.sync import async_to_sync

        async_to_sync(func)(doc)

    run_async_document_function.__name__ = getattr(func, "__name__", "run_async_document_function")
    return run_async_document_function


def app_name_for_path(path: str) -> str:
    """The URL name bokeh serve gives a path: the file name without suffix, or the directory name."""
    path = os.path.abspath(os.path.expanduser(path)).rstrip(os.sep)
    base = os.path.basename(path)
    if os.path.isdir(path):
        return base
    return Path(base).stem


def expand_app_paths(paths: Iterable[str], use_glob: bool = False) -> list[str]:
    """runbokeh's positional arguments, expanded with glob patterns when --glob is given."""
    result: list[str] = []
    for item in paths:
        if use_glob:
            matches = sorted(glob.glob(os.path.expanduser(item)))
            if not matches:
                raise InvalidAppSpec(f"--glob pattern {item!r} matches no files.")
            result.extend(matches)
        else:
            result.append(item)
    return result


def refuse_shadowed_apps(command_line_apps: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise InvalidAppSpec if a runbokeh argument would take the name of a different settings app.

    The same file or directory under its own name is fine: it is the settings app, which keeps
    its access policy and options (conf.py merges the two). Anything else would silently serve
    another app, without the settings entry's access policy, under a name the site configured.
    """
    try:
        configured = bokeh_settings.user_settings.get("APPS", {})
    except Exception:
        return  # an invalid BOKEHSERVE is reported by check E003
    if not isinstance(configured, Mapping):
        return
    for name, entry in command_line_apps.items():
        if name not in configured:
            continue
        spec = configured[name]
        spec = spec.get("app") if isinstance(spec, Mapping) else spec
        if isinstance(spec, str | os.PathLike) and os.path.realpath(spec) == os.path.realpath(entry["app"]):
            continue
        raise InvalidAppSpec(
            f"Two apps would be served at /{name}: BOKEHSERVE['APPS'][{name!r}] in settings ({spec!r}) and "
            f"the command-line app {entry['app']!r}. Rename the file or directory, or remove the entry "
            "from BOKEHSERVE['APPS']."
        )


def _reset_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting == "BOKEHSERVE":
        reset()


setting_changed.connect(_reset_on_change)

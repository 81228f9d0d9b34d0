"""Defines the named errors of bokehserve_django.

Depends only on the standard library and django.core.exceptions.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured, PermissionDenied

__all__ = (
    "AppLoadError",
    "AppNotRegistered",
    "AppTimedOut",
    "BearerTokenRefused",
    "ClusterUnavailable",
    "InvalidAppSpec",
    "InvalidEnvironmentVariable",
    "InvalidToken",
    "NotAccepting",
    "PanelNotInstalled",
    "ProcessFull",
    "SessionNotFound",
    "SessionRefused",
    "SessionsUnavailable",
)


class InvalidAppSpec(ImproperlyConfigured):
    """Raised when an entry of BOKEHSERVE["APPS"] or a runbokeh argument is not an app we can load."""


class InvalidEnvironmentVariable(ImproperlyConfigured):
    """Raised when a ``BOKEH_*`` environment variable that overrides a BOKEHSERVE key holds an invalid value."""

    def __init__(self, variable: str, value: str, reason: str) -> None:
        super().__init__(f"{variable}={value!r} is not valid: {reason}")
        self.variable = variable
        self.value = value
        self.reason = reason


class PanelNotInstalled(ImproperlyConfigured):
    """Raised when something needs Panel (a Panel app, a Panel flag) but panel is not installed.

    ``needs`` says what, e.g. "The Panel app 'page.md'".
    """

    def __init__(self, needs: str) -> None:
        super().__init__(
            f'{needs} needs Panel, which is not installed; install it with pip install "bokehserve-django[panel]" '
            "(see docs/panel.md)."
        )


class ComponentResourceNotFound(Exception):
    """A ``components/...`` URL names no file a Panel component lists; ``status`` says how (400, 403 or 404)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class AppNotRegistered(LookupError):
    """Raised when a URL names an application that is not registered."""


class AppLoadError(RuntimeError):
    """Raised when a registered application failed to load (syntax error, exception at import).

    ``details`` holds the traceback text for developers; it is shown only when DEBUG is on.
    """

    def __init__(self, app_name: str, details: str) -> None:
        super().__init__(f"Bokeh application {app_name!r} failed to load")
        self.app_name = app_name
        self.details = details


class InvalidToken(PermissionDenied):
    """Raised when a session id or token is malformed, wrongly signed or expired."""


class SessionRefused(PermissionDenied):
    """Raised when a request may not create or reach a session (e.g. session ids must come from the site)."""


class SessionNotFound(LookupError):
    """Raised when a session id names no live session in this process."""


class SessionsUnavailable(RuntimeError):
    """Raised when this process cannot give a request a session right now, though it may soon.

    Pages answer 503 with ``Retry-After``; WebSockets are closed with a code and this reason.
    """

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class ClusterUnavailable(SessionsUnavailable):
    """Raised when the cluster's Redis is unreachable, so a session's owner cannot be found or recorded."""


class ProcessFull(SessionsUnavailable):
    """Raised when this process already holds BOKEHSERVE["MAX_SESSIONS"] sessions (being created included)."""


class AppTimedOut(SessionsUnavailable):
    """Raised when an app's code (or a hook on the way to its session) ran past BOKEHSERVE["APP_CODE_TIMEOUT"]."""


class NotAccepting(SessionsUnavailable):
    """Raised when a stopping (draining) process is asked for a new session."""


class BearerTokenRefused(PermissionDenied):
    """Raised when a request's ``Authorization: Bearer`` token is malformed, expired, revoked or for another app."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

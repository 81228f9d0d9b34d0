"""Decides which Django users may open sessions of an app: per-app access policies.

An app's registration may carry ``"access"``; BOKEHSERVE["DEFAULT_ACCESS"] applies
otherwise. A policy is one of::

    "public"                                  # anyone, signed in or not
    "login"                                   # any active signed-in user
    {"permissions": ["reports.view_report"]}  # signed in with all of these permissions
    {"groups": ["analysts", "staff"]}         # signed in and in at least one of these groups
    my_predicate                              # callable(user, request) -> bool, or "module.func"

The same policy is checked on the page, autoload.js, metadata and the WebSocket, and a
predicate gets the same ``AccessRequest`` on each of them (built from the Django
``HttpRequest`` or from the WebSocket's ASGI scope). Knows no view or consumer.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from django.core.exceptions import ImproperlyConfigured
from django.http.cookie import parse_cookie
from django.utils.datastructures import CaseInsensitiveMapping
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from django.http import HttpRequest

__all__ = ("AccessPolicy", "AccessRequest", "parse_policy")


@dataclass(frozen=True)
class AccessRequest:
    """The request an access policy decides on: the same type on HTTP and on the WebSocket.

    A callable policy is called as ``predicate(user, request)`` with ``user`` the same
    object as ``request.user``. On the WebSocket, ``headers``, ``cookies``, ``path`` and
    ``remote_addr`` are the upgrade request's; ``arguments`` are the app's query arguments
    as app code sees them (``session_context.request.arguments``): the page's, carried in
    the session token, when a page came first.
    """

    #: ``"http"`` (page, autoload.js, metadata) or ``"websocket"`` (the session's connection).
    transport: Literal["http", "websocket"]
    #: The registered name of the app asked for.
    app_name: str
    #: The Django user (``AnonymousUser`` when signed out; a bearer token's user for headless clients).
    user: Any
    #: The URL path, without the query string (``/sales``, ``/sales/autoload.js``, ``/sales/ws``).
    path: str
    #: The HTTP method (``"GET"`` for the WebSocket upgrade).
    method: str
    #: ``"http"`` or ``"https"`` (a ``wss://`` WebSocket is ``"https"``).
    scheme: str
    #: The Host header as sent.
    host: str
    #: The client's address (the proxy's, unless runbokeh runs with --use-xheaders); None if unknown.
    remote_addr: str | None
    #: Request headers, names lower-case and looked up case-insensitively (``headers["X-Team"]``).
    headers: Mapping[str, str]
    #: Cookies by name.
    cookies: Mapping[str, str]
    #: The app's query arguments: name -> values (strings), ``bokeh-*`` names left out.
    arguments: Mapping[str, tuple[str, ...]]

    @classmethod
    def for_http(cls, request: HttpRequest, app_name: str, user: Any) -> AccessRequest:
        """The AccessRequest for a page, autoload.js or metadata request."""
        from .requests import arguments_from_query

        return cls(
            transport="http",
            app_name=app_name,
            user=_user_or_anonymous(user),
            path=request.path,
            method=request.method or "GET",
            scheme=request.scheme or "http",
            host=request.headers.get("Host", ""),
            remote_addr=request.META.get("REMOTE_ADDR"),
            headers=CaseInsensitiveMapping({str(k).lower(): str(v) for k, v in request.headers.items()}),
            cookies=MappingProxyType(dict(request.COOKIES)),
            arguments=_text_arguments(arguments_from_query(request.META.get("QUERY_STRING", ""))),
        )

    @classmethod
    def for_websocket(
        cls, scope: Mapping[str, Any], app_name: str, user: Any, arguments: Mapping[str, list[bytes]]
    ) -> AccessRequest:
        """The AccessRequest for a WebSocket upgrade; ``arguments`` are the session request's (bytes)."""
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", []):
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        client = scope.get("client") or (None, None)
        return cls(
            transport="websocket",
            app_name=app_name,
            user=_user_or_anonymous(user),
            path=scope.get("path", ""),
            method="GET",
            scheme="https" if scope.get("scheme") == "wss" else "http",
            host=headers.get("host", ""),
            remote_addr=client[0],
            headers=CaseInsensitiveMapping(headers),
            cookies=MappingProxyType(parse_cookie(headers.get("cookie", ""))),
            arguments=_text_arguments(arguments),
        )


def _user_or_anonymous(user: Any) -> Any:
    """``user``, or AnonymousUser when the caller has none (a site without AuthenticationMiddleware)."""
    if user is not None:
        return user
    from django.contrib.auth.models import AnonymousUser

    return AnonymousUser()


def _text_arguments(arguments: Mapping[str, list[bytes]]) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({
        name: tuple(value.decode("utf-8", "replace") for value in values) for name, values in arguments.items()
    })


@dataclass(frozen=True)
class AccessPolicy:
    """Who may open sessions of one app."""

    login_required: bool = False
    permissions: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    predicate: Callable[[Any, AccessRequest], Any] | None = field(default=None, compare=False)
    description: str = "public"

    @property
    def is_public(self) -> bool:
        return not (self.login_required or self.permissions or self.groups or self.predicate)

    def allows_sync(self, request: AccessRequest) -> bool:
        """Whether ``request.user`` may reach the app (may query the database: call off the event loop)."""
        if self.is_public:
            return True
        user = request.user
        authenticated = bool(user is not None and getattr(user, "is_authenticated", False))
        if self.predicate is not None:
            return bool(self.predicate(user, request))
        if not authenticated or not getattr(user, "is_active", False):
            return False
        if self.permissions and not user.has_perms(self.permissions):
            return False
        if self.groups and not user.groups.filter(name__in=self.groups).exists():
            return False
        return True


PUBLIC = AccessPolicy()


def parse_policy(spec: Any, where: str) -> AccessPolicy:
    """An AccessPolicy from a settings value; ImproperlyConfigured names ``where`` otherwise."""
    if spec is None or spec == "public":
        return PUBLIC
    if spec == "login":
        return AccessPolicy(login_required=True, description="signed-in users")
    if isinstance(spec, str):
        try:
            spec = import_string(spec.replace(":", "."))
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"{where}: {spec!r} is not 'public', 'login' or an importable callable(user, request) ({exc})."
            ) from exc
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"permissions", "groups"}
        if unknown or not spec:
            raise ImproperlyConfigured(f"{where}: an access dict takes 'permissions' and/or 'groups', not {sorted(unknown)}.")
        permissions = _names(spec.get("permissions", ()), where, "permissions")
        groups = _names(spec.get("groups", ()), where, "groups")
        parts = ([f"permissions {list(permissions)}"] if permissions else []) + ([f"groups {list(groups)}"] if groups else [])
        return AccessPolicy(login_required=True, permissions=permissions, groups=groups, description=" and ".join(parts))
    if callable(spec):
        if inspect.iscoroutinefunction(spec):
            raise ImproperlyConfigured(f"{where}: the access callable must be a plain function, not async.")
        return AccessPolicy(predicate=spec, description=getattr(spec, "__qualname__", repr(spec)))
    raise ImproperlyConfigured(
        f"{where}: {spec!r} is not an access policy; use 'public', 'login', {{'permissions': [...]}}, "
        "{'groups': [...]} or a callable(user, request) -> bool."
    )


def _names(value: Any, where: str, key: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ImproperlyConfigured(f"{where}: {key!r} must be a list of strings.")
    return tuple(str(v) for v in value)

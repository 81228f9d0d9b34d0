"""Decides which Django users may open sessions of an app: per-app access policies.

An app's registration may carry ``"access"``; BOKEHSERVE["DEFAULT_ACCESS"] applies
otherwise. A policy is one of::

    "public"                                  # anyone, signed in or not
    "login"                                   # any active signed-in user
    {"permissions": ["reports.view_report"]}  # signed in with all of these permissions
    {"groups": ["analysts", "staff"]}         # signed in and in at least one of these groups
    my_predicate                              # callable(user, request) -> bool, or "module.func"

The same policy is checked on the page, autoload.js, metadata and the WebSocket.
Knows no view or consumer; reads the user and the request it is given.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

__all__ = ("AccessPolicy", "parse_policy")


@dataclass(frozen=True)
class AccessPolicy:
    """Who may open sessions of one app."""

    login_required: bool = False
    permissions: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    predicate: Callable[[Any, Any], Any] | None = field(default=None, compare=False)
    description: str = "public"

    @property
    def is_public(self) -> bool:
        return not (self.login_required or self.permissions or self.groups or self.predicate)

    def allows_sync(self, user: Any, request: Any = None) -> bool:
        """Whether ``user`` may reach the app (may query the database: call off the event loop)."""
        if self.is_public:
            return True
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

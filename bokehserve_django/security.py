"""Decides which WebSocket origins and hosts may reach sessions, and filters what goes into tokens.

Reads settings through ``conf``; knows no consumer and no view.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from .bearer import carries_our_token
from .conf import bokeh_settings
from .credentials import looks_like_credential_cookie, looks_like_credential_header

__all__ = ("filter_cookies", "filter_headers", "host_allowed", "origin_allowed")

logger = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
#: Hosts a development site accepts when DEBUG is on and ALLOWED_HOSTS is empty (as Django).
_DEBUG_HOSTS = [".localhost", "127.0.0.1", "[::1]"]


def _allowed_hosts() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = list(_DEBUG_HOSTS)
    return hosts


def host_allowed(host_header: str) -> bool:
    """Whether the Host header of a request names this site (Django's ALLOWED_HOSTS rules)."""
    domain, _port = split_domain_port(host_header or "")
    return bool(domain) and validate_host(domain, _allowed_hosts())


def _normalise_origin(origin: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS.get(scheme, 80)


def _pattern_matches(pattern: str, scheme: str, host: str, port: int) -> bool:
    pattern = pattern.strip().lower()
    if pattern == "*":
        return True
    if "://" in pattern:
        pattern_scheme, _, pattern = pattern.partition("://")
        if pattern_scheme != scheme:
            return False
    pattern = pattern.rstrip("/")
    any_port = pattern.endswith(":*")
    if any_port:
        pattern = pattern[:-2]
    try:
        parts = urlsplit("//" + pattern)
        pattern_host, pattern_port = parts.hostname or "", parts.port
    except ValueError:
        return False
    if not any_port and port != (pattern_port or _DEFAULT_PORTS.get(scheme, 80)):
        return False
    return fnmatch.fnmatchcase(host, pattern_host)


def origin_allowed(origin: str | None) -> bool:
    """Whether a WebSocket upgrade with this Origin header may proceed.

    No Origin: allowed (non-browser clients such as ``bokeh.client`` send none; browsers
    always do). With BOKEHSERVE["ALLOWED_ORIGINS"] set, the origin must match one of its
    ``host[:port]`` patterns (no port: the scheme's default port; ``*`` wildcards allowed);
    otherwise its host must be in ALLOWED_HOSTS.
    """
    if origin is None:
        return True
    normalised = _normalise_origin(origin)
    if normalised is None:
        return False
    scheme, host, port = normalised
    patterns = bokeh_settings.ALLOWED_ORIGINS
    if patterns:
        return any(_pattern_matches(p, scheme, host, port) for p in patterns)
    return validate_host(host, _allowed_hosts())


def refusal_hint(origin: str | None) -> str:
    """The log line's advice on how to allow ``origin``."""
    normalised = _normalise_origin(origin or "")
    netloc = urlsplit(origin).netloc if normalised else str(origin)
    current = bokeh_settings.ALLOWED_ORIGINS or [f"ALLOWED_HOSTS {_allowed_hosts()!r}"]
    return (
        f"add {netloc!r} to BOKEHSERVE['ALLOWED_ORIGINS'] or pass --allow-websocket-origin={netloc} "
        f"to runbokeh (currently allowed: {current!r})"
    )


# Headers and cookies copied into session tokens -----------------------------------------


def _kept(
    values: Mapping[str, str], include: list[str] | None, exclude: list[str] | None, is_credential: Callable[[str], bool]
) -> dict[str, str]:
    """INCLUDE_*: exactly the names listed (credential-looking ones too: the site asked; W007
    warns). Otherwise everything except EXCLUDE_* and the names that look like credentials."""
    if include is not None:
        wanted = {n.lower() for n in include}
        return {k: v for k, v in values.items() if k.lower() in wanted}
    unwanted = {n.lower() for n in (exclude or [])}
    return {k: v for k, v in values.items() if k.lower() not in unwanted and not is_credential(k)}


def filter_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The request headers that go into a session token (INCLUDE_/EXCLUDE_HEADERS, see credentials.py)."""
    # The token is readable by page JavaScript: credential-looking headers stay out even
    # when EXCLUDE_HEADERS is set, unless INCLUDE_HEADERS names them.
    kept = _kept(headers, bokeh_settings.INCLUDE_HEADERS, bokeh_settings.EXCLUDE_HEADERS, looks_like_credential_header)
    # Our bearer tokens (bearer.py) never reach a session token, even when INCLUDE_HEADERS
    # lists their header: that would hand a headless client's credential to page JavaScript.
    return {name: value for name, value in kept.items() if not carries_our_token(value)}


def filter_cookies(cookies: Mapping[str, str]) -> dict[str, str]:
    """The cookies that go into a session token (INCLUDE_/EXCLUDE_COOKIES, see credentials.py)."""
    return _kept(cookies, bokeh_settings.INCLUDE_COOKIES, bokeh_settings.EXCLUDE_COOKIES, looks_like_credential_cookie)

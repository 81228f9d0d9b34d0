"""Decides which request header and cookie names look like credentials, to keep them out of session tokens.

Session tokens are readable by the page's JavaScript, and bokeh copies request headers and
cookies into them (``session_context.request``). ``security.filter_headers/filter_cookies``
leave out every name this module flags, unless ``INCLUDE_HEADERS``/``INCLUDE_COOKIES`` name
it; ``checks.py`` (W007) warns when they do. Reads Django's and common auth packages'
settings for the names they give their cookies; knows no request.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings

__all__ = ("credential_cookie_names", "looks_like_credential_cookie", "looks_like_credential_header")

#: Parts of a name that mark it as a credential wherever they appear ("X-Auth-Token",
#: "remember_token", "PHPSESSID", "jwt-auth", "X-Api-Key", "csrftoken", "refresh_token"...).
#: "auth" also covers Authorization and Proxy-Authorization, "session" sessionid,
#: JSESSIONID and ASP.NET_SessionId; "sessid" PHP's PHPSESSID.
SENSITIVE_PARTS = (
    "auth",
    "token",
    "session",
    "sessid",
    "jwt",
    "secret",
    "key",
    "passw",
    "csrf",
    "xsrf",
    "credential",
    "remember",
    "bearer",
    "login",
    "signature",
)

#: Whole words (a name split at anything but letters and digits) that mark a credential but
#: are too short or too common to match inside other words: simplejwt-style ``access`` and
#: ``refresh`` cookies, Express's ``connect.sid``, WordPress's ``wordpress_logged_in_*``, ``pwd``, ``pass``.
SENSITIVE_WORDS = frozenset({"access", "refresh", "sid", "pwd", "pass", "logged"})

#: Cookie name prefixes that browsers reserve for Secure cookies; sites use them for
#: session and login cookies (``__Host-session``, ``__Secure-next-auth.session-token``).
SENSITIVE_COOKIE_PREFIXES = ("__host-", "__secure-")

#: Header names that carry credentials without any of the parts above.
SENSITIVE_HEADERS = frozenset({"cookie"})

#: (settings name, key inside it or None) of cookie names that auth packages let a site choose.
#: dj-rest-auth (REST_AUTH, and its older flat settings), django-rest-framework-jwt (JWT_AUTH)
#: and the common djangorestframework-simplejwt cookie recipe (SIMPLE_JWT["AUTH_COOKIE"]).
_COOKIE_NAME_SETTINGS = (
    ("SESSION_COOKIE_NAME", None),
    ("CSRF_COOKIE_NAME", None),
    ("REST_AUTH", "JWT_AUTH_COOKIE"),
    ("REST_AUTH", "JWT_AUTH_REFRESH_COOKIE"),
    ("JWT_AUTH_COOKIE", None),
    ("JWT_AUTH_REFRESH_COOKIE", None),
    ("JWT_AUTH", "JWT_AUTH_COOKIE"),
    ("SIMPLE_JWT", "AUTH_COOKIE"),
    ("SIMPLE_JWT", "AUTH_COOKIE_REFRESH"),
)

_WORD_SPLIT = re.compile(r"[^a-z0-9]+")


def _looks_sensitive(lowered: str) -> bool:
    return any(part in lowered for part in SENSITIVE_PARTS) or not SENSITIVE_WORDS.isdisjoint(
        _WORD_SPLIT.split(lowered)
    )


def credential_cookie_names() -> set[str]:
    """Cookie names (lower case) that this site's settings give to session, CSRF and JWT cookies."""
    names: set[str] = set()
    for setting, key in _COOKIE_NAME_SETTINGS:
        value: Any = getattr(settings, setting, None)
        if key is not None:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value:
            names.add(value.lower())
    return names


def _csrf_header() -> str:
    """Django's CSRF header as a header name (CSRF_HEADER_NAME is a META key: HTTP_X_CSRFTOKEN)."""
    meta_name = getattr(settings, "CSRF_HEADER_NAME", "HTTP_X_CSRFTOKEN")
    return meta_name.removeprefix("HTTP_").replace("_", "-").lower()


def looks_like_credential_cookie(name: str) -> bool:
    """Whether a cookie of this name may hold a credential (and so stays out of tokens by default)."""
    lowered = name.lower()
    return (
        lowered in credential_cookie_names()
        or lowered.startswith(SENSITIVE_COOKIE_PREFIXES)
        or _looks_sensitive(lowered)
    )


def looks_like_credential_header(name: str) -> bool:
    """Whether a request header of this name may carry a credential (stays out of tokens by default)."""
    lowered = name.lower()
    return lowered in SENSITIVE_HEADERS or lowered == _csrf_header() or _looks_sensitive(lowered)

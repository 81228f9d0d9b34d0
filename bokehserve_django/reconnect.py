"""Decides what a WebSocket whose session token has expired gets: its session back, a reload, or a refusal.

BokehJS reconnects a lost WebSocket with the page's original token and never asks for a new
one (bokeh#14416), so a page left open longer than SESSION_TOKEN_EXPIRATION could not get its
session back. An expired token may reopen its session when all of these hold:

- its signature is valid (checked by ``signing.read_token`` before anything here);
- it is a page token (``PAGE_TOKEN_KEY``): a page or autoload.js request made it for a session
  that existed from then on, so the WebSocket must find that session and never creates one
  (``locate(..., must_exist=True)``); bokeh.client makes a fresh token for every connect;
- the connection is the token's user: the Django user of the cookie (or, without a cookie, of
  the signed token) is the one bound into the token, or both are anonymous; the session layer
  then checks it is the session's own user as for any token;
- it expired at most SESSION_TOKEN_RECONNECT_GRACE seconds ago.

A page token that fails only the last rule, or whose session is gone, is closed with 4010
(SESSION_GONE): recover.js reloads the page, which gets a new session and token.
Knows tokens and users, no consumer or channel layer.
"""

from __future__ import annotations

from typing import Any

from .auth import TOKEN_USER_KEY
from .cluster import is_page_token
from .conf import bokeh_settings
from .exceptions import InvalidToken, SessionRefused
from .signing import EXPIRED_MESSAGE, TokenInfo

__all__ = ("check_expired_token", "reload_reason")


def _user_pk(user: Any) -> str | None:
    return str(user.pk) if getattr(user, "is_authenticated", False) else None


def check_expired_token(info: TokenInfo, user: Any) -> None:
    """Raise InvalidToken or SessionRefused if the expired ``info`` may not reconnect as ``user`` at all."""
    if not is_page_token(info.payload):
        raise InvalidToken(EXPIRED_MESSAGE)
    bound = info.payload.get(TOKEN_USER_KEY)
    if (str(bound) if bound is not None else None) != _user_pk(user):
        # Someone else's cookie with a lifted token, or a user who signed out since: a valid
        # token would reach no session either (sessions.py), an expired one gets nothing.
        raise SessionRefused(
            f"the token expired {info.expired_for:.0f} s ago and this connection is not its user's "
            f"(user {_user_pk(user)}, token for {bound})"
        )


def reload_reason(info: TokenInfo) -> str | None:
    """Why the page must reload rather than reconnect (its token expired beyond the grace), or None."""
    grace = bokeh_settings.SESSION_TOKEN_RECONNECT_GRACE
    if info.expired_for <= grace:
        return None
    return (
        f"This page's session token expired {info.expired_for:.0f} s ago, more than "
        f"SESSION_TOKEN_RECONNECT_GRACE ({grace} s); reload the page"
    )

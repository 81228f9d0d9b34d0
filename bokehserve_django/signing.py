"""Creates and checks Bokeh session ids and tokens with the key and signing mode from settings.

Every call into ``bokeh.util.token`` passes ``secret_key=`` and ``signed=`` explicitly:
bokeh's own defaults come from its environment variables, not from Django settings.
Knows no request and no scope.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from bokeh.util.token import (
    check_session_id_signature,
    check_token_signature,
    generate_jwt_token,
    generate_session_id as bokeh_generate_session_id,
    get_session_id,
    get_token_payload,
)
from django.conf import settings

from .conf import bokeh_settings
from .exceptions import InvalidToken

__all__ = (
    "EXPIRED_MESSAGE",
    "MAX_TOKEN_LENGTH",
    "TokenInfo",
    "check_session_id",
    "generate_session_id",
    "generate_token",
    "generate_token_with_payload",
    "read_token",
    "secret_key",
)

logger = logging.getLogger(__name__)

#: Tokens longer than this are refused before any decoding. Browsers send the token in
#: the Sec-WebSocket-Protocol header; nginx's default large header buffer is 8 KiB.
MAX_TOKEN_LENGTH = 64 * 1024
#: The zlib payload of a token may not inflate beyond this (a crafted one inflates 1000-fold).
MAX_PAYLOAD_SIZE = 1024 * 1024


#: Session ids we accept: bokeh's are 44 alphanumerics, plus "." and a 43-character
#: signature when signed; ids chosen by a site must stay within this alphabet and length.
SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_\-]{1,100}(\.[A-Za-z0-9_\-]{1,100})?")


def check_session_id(session_id: str) -> str:
    """Return ``session_id`` if it is well formed and correctly signed, else raise InvalidToken."""
    if not isinstance(session_id, str) or not SESSION_ID_PATTERN.fullmatch(session_id):
        raise InvalidToken("Malformed session id")
    signed = bokeh_settings.sign_sessions
    if signed and not check_session_id_signature(session_id, secret_key=secret_key(), signed=True):
        logger.warning("Session id %r had an invalid signature", session_id)
        raise InvalidToken("Invalid session id signature")
    return session_id


def secret_key() -> bytes:
    """The signing key: BOKEHSERVE["SECRET_KEY"], else one derived from Django's SECRET_KEY.

    Deriving keeps the Django key itself out of bokeh's code paths, and gives every site a
    key without configuration.
    """
    configured = bokeh_settings.SECRET_KEY
    if configured:
        return configured.encode() if isinstance(configured, str) else bytes(configured)
    return _derived_key(settings.SECRET_KEY)


@functools.lru_cache(maxsize=4)
def _derived_key(django_secret_key: str) -> bytes:
    # Every token read or made needs the key: derive it once per Django key.
    return hmac.new(django_secret_key.encode(), b"bokehserve_django.session-signing", hashlib.sha256).hexdigest().encode()


def generate_session_id() -> str:
    """A new session id, signed when signing is on; pass it to ``server_session(...)``."""
    return bokeh_generate_session_id(secret_key=secret_key(), signed=bokeh_settings.sign_sessions)


def generate_token(session_id: str, extra_payload: dict[str, Any] | None = None, expiration: int | None = None) -> str:
    """A session token for ``session_id`` (what BokehJS sends to open the WebSocket)."""
    if expiration is None:
        expiration = bokeh_settings.SESSION_TOKEN_EXPIRATION
    return generate_jwt_token(
        session_id,
        secret_key=secret_key(),
        signed=bokeh_settings.sign_sessions,
        extra_payload=extra_payload,
        expiration=expiration,
    )


def generate_token_with_payload(
    session_id: str, extra_payload: dict[str, Any] | None = None, expiration: int | None = None
) -> tuple[str, dict[str, Any]]:
    """A token as ``generate_token`` makes it, and its payload as ``read_token`` will read it back.

    For the request that makes a session and its token at once: the session gets the payload
    its WebSocket will carry (through JSON, with ``session_expiry``) without checking the
    signature and size of a token made a moment ago.
    """
    token = generate_token(session_id, extra_payload=extra_payload, expiration=expiration)
    payload = get_token_payload(token)
    _remember_issued(token, session_id, payload)
    return token, payload


#: How many page tokens, made here and not yet presented, ``read_token`` remembers.
ISSUED_TOKENS_KEPT = 256
#: token -> (key and signing mode it was made with, session id, payload), oldest first. A
#: token this process made for a page a moment ago is read back by the page's WebSocket:
#: decoding it, checking its signature and inflating its payload again (three decodes of
#: the token in bokeh's functions) would only confirm what we wrote. The entry goes at that
#: first read; reconnects, other processes and tokens from anywhere else take the full check.
_issued: dict[str, tuple[tuple[bytes, bool], str, dict[str, Any]]] = {}
_issued_lock = threading.Lock()


def _signing_mode() -> tuple[bytes, bool]:
    return secret_key(), bokeh_settings.sign_sessions


def _remember_issued(token: str, session_id: str, payload: dict[str, Any]) -> None:
    entry = (_signing_mode(), session_id, payload)
    with _issued_lock:
        _issued[token] = entry
        while len(_issued) > ISSUED_TOKENS_KEPT:
            del _issued[next(iter(_issued))]  # a page that never connected


def _take_issued(token: str) -> tuple[str, dict[str, Any]] | None:
    """(session id, payload) of ``token`` if this process made it and nothing has read it since."""
    with _issued_lock:
        entry = _issued.pop(token, None)
    if entry is None:
        return None
    mode, session_id, payload = entry
    if mode != _signing_mode():
        return None  # the key or signing mode changed since: check it as any other token
    return session_id, payload


@dataclass(frozen=True)
class TokenInfo:
    """What a checked token says: its session id and payload (headers, cookies, arguments...)."""

    session_id: str
    payload: dict[str, Any]
    #: Seconds since the token expired; 0 while it is valid (only with ``allow_expired``).
    expired_for: float = 0.0

    @property
    def expired(self) -> bool:
        return self.expired_for > 0


#: What an expired token is told, wherever it is refused.
EXPIRED_MESSAGE = "Token is expired. Configure the app with a larger value for --session-token-expiration if necessary"


def read_token(token: str, *, allow_expired: bool = False) -> TokenInfo:
    """Check ``token`` (size, signature, expiry) and decode it; raise InvalidToken otherwise.

    The signature is verified before the zlib payload is inflated, so an attacker cannot
    make us decompress anything without the key; the inflated size is capped in any case.
    ``allow_expired``: an expired but otherwise valid token is returned with ``expired_for``
    set, for the caller to decide (``reconnect.py``: a page reconnecting to its session).
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("Token is missing or too long")
    issued = _take_issued(token)
    session_id, payload = issued if issued is not None else _checked_contents(token)
    expiry = payload.get("session_expiry")
    if not isinstance(expiry, int | float):
        raise InvalidToken("Token has no session expiry")
    now = time.time()
    if now >= expiry:
        if not allow_expired:
            raise InvalidToken(EXPIRED_MESSAGE)
        # max(): a token read at the very second it expires still counts as expired.
        return TokenInfo(session_id=session_id, payload=payload, expired_for=max(now - expiry, 1e-6))
    return TokenInfo(session_id=session_id, payload=payload)


def _checked_contents(token: str) -> tuple[str, dict[str, Any]]:
    """The session id and payload of a token from outside, after its signature and size checks."""
    signed = bokeh_settings.sign_sessions
    try:
        session_id = get_session_id(token)
    except Exception as exc:
        raise InvalidToken("Token is not a valid Bokeh session token") from exc
    if not isinstance(session_id, str) or not SESSION_ID_PATTERN.fullmatch(session_id):
        raise InvalidToken("Token carries no valid session id")
    try:
        valid = check_token_signature(token, secret_key=secret_key(), signed=signed)
    except Exception as exc:
        raise InvalidToken("Token is not a valid Bokeh session token") from exc
    if not valid:
        logger.warning("Token for session %r had an invalid signature", _loggable(session_id))
        raise InvalidToken("Invalid token signature")
    _check_payload_size(token)
    try:
        payload = get_token_payload(token)
    except Exception as exc:
        raise InvalidToken("Token payload cannot be decoded") from exc
    return session_id, payload


def _check_payload_size(token: str) -> None:
    """Refuse a token whose compressed extra payload would inflate past MAX_PAYLOAD_SIZE."""
    import zlib

    first = token.split(".")[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)))
    except Exception as exc:
        raise InvalidToken("Token is not a valid Bokeh session token") from exc
    if not isinstance(decoded, dict):
        raise InvalidToken("Token is not a valid Bokeh session token")
    compressed = decoded.get("__bk__zlib_")
    if compressed is None:
        return
    if not isinstance(compressed, str):
        raise InvalidToken("Token payload is malformed")
    try:
        raw = base64.urlsafe_b64decode(compressed + "=" * (-len(compressed) % 4))
        inflater = zlib.decompressobj()
        inflater.decompress(raw, MAX_PAYLOAD_SIZE)
    except Exception as exc:
        raise InvalidToken("Token payload is malformed") from exc
    if inflater.unconsumed_tail:
        raise InvalidToken("Token payload is too large")


def _loggable(session_id: str) -> str:
    """A session id shortened for logs (never log whole tokens)."""
    return session_id[:100]

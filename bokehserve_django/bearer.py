"""Issues and checks the bearer tokens (JWTs) that let headless clients act as Django users.

Scripts, notebooks and jobs using ``bokeh.client`` carry no Django session cookie. ``manage.py
bokeh_token USER`` gives them a JWT (HS256, PyJWT) to send as ``Authorization: Bearer <jwt>``
on the page/autoload.js request and on the WebSocket upgrade; that request then acts as USER:
USER's access policies, ``session_context.user``. Claims: ``sub`` (the user's pk), ``iat``,
``exp``, ``jti`` and ``aud``: ``urn:bokehserve:<site>`` for every app of the site, or
``urn:bokehserve:<site>:app:<name>`` for one app.

A token is valid only while its ``jti`` is in the database unrevoked (models.BearerToken):
revoking it, or signing its user out or deactivating them, is a database write every
process sees. Revoking one token also closes the sessions whose WebSockets it opened, in
every process on the channel layer (as a sign-out does for the user's). The JWT never goes
into a session token or a page (credentials.py).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import logging
import uuid
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model

from .conf import bokeh_settings
from .exceptions import BearerTokenRefused

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from django.http import HttpRequest

__all__ = (
    "audience",
    "carries_our_token",
    "issue_token",
    "refusal_response",
    "revoke_token",
    "revoke_tokens",
    "revoke_user_tokens",
    "token_id_in_scope",
    "user_for_request",
    "user_for_scope",
)

logger = logging.getLogger(__name__)

ALGORITHM = "HS256"
_SCHEME = "bearer"
#: Channel-layer message (to every process) that closes the sessions opened with revoked tokens.
REVOKE_TOKENS_MESSAGE = "bokehserve.revoke_bearer_tokens"
#: The close reason (code 4008, as a sign-out's) of a WebSocket whose bearer token was revoked.
REVOKED_REASON = "Bearer token revoked; issue a new one with manage.py bokeh_token"


def signing_key() -> bytes:
    """BOKEHSERVE["BEARER_TOKEN_KEY"], else a key derived from Django's SECRET_KEY.

    Its own derivation label: a session-signing key (page JavaScript sees what it signs)
    can never sign a bearer token, nor the other way round.
    """
    configured = bokeh_settings.BEARER_TOKEN_KEY
    if configured:
        return configured.encode() if isinstance(configured, str) else bytes(configured)
    return hmac.new(settings.SECRET_KEY.encode(), b"bokehserve_django.bearer-tokens", hashlib.sha256).hexdigest().encode()


def site_name() -> str:
    """BOKEHSERVE["BEARER_TOKEN_SITE"], else the first plain host name of ALLOWED_HOSTS, else "localhost"."""
    configured = bokeh_settings.BEARER_TOKEN_SITE
    if configured:
        return str(configured)
    for host in settings.ALLOWED_HOSTS:
        if host and host != "*" and not host.startswith("."):
            return host
    return "localhost"


def audience(app_name: str | None = None) -> str:
    """The ``aud`` of tokens for the whole site, or for the one app ``app_name``."""
    site = f"urn:bokehserve:{site_name()}"
    return f"{site}:app:{app_name}" if app_name else site


def issue_token(user: Any, *, app_name: str | None = None, ttl: int | None = None) -> tuple[str, Any]:
    """A new JWT for ``user`` (and its database row); ``ttl`` seconds, BEARER_TOKEN_TTL by default."""
    import jwt

    from .models import BearerToken

    ttl = bokeh_settings.BEARER_TOKEN_TTL if ttl is None else ttl
    if ttl <= 0:
        raise ValueError("A bearer token's lifetime must be a positive number of seconds.")
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    expires = now + datetime.timedelta(seconds=ttl)
    row = BearerToken.objects.create(
        jti=uuid.uuid4().hex, user=user, app=app_name or "", issued_at=now, expires_at=expires,
    )
    claims = {"sub": str(user.pk), "iat": now, "exp": expires, "jti": row.jti, "aud": audience(app_name)}
    return jwt.encode(claims, signing_key(), algorithm=ALGORITHM), row


#: The start of every ``aud`` this module issues: what tells our tokens from other systems'.
AUDIENCE_PREFIX = "urn:bokehserve:"


def _is_ours(credential: str) -> bool:
    """Whether ``credential`` is a JWT with one of our audiences (unverified: the claim only
    says whom it addresses; _check verifies everything)."""
    import jwt

    try:
        claims = jwt.decode(credential, options={"verify_signature": False, "verify_exp": False, "verify_aud": False})
    except jwt.InvalidTokenError:
        return False
    aud = claims.get("aud") if isinstance(claims, dict) else None
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    return any(isinstance(a, str) and a.startswith(AUDIENCE_PREFIX) for a in audiences)


def _bearer_credential(authorization: str | None) -> str | None:
    """Our token in an ``Authorization: Bearer <token>`` header value, or None.

    A Bearer token of another system (an API token, an OAuth proxy's ID token) is not ours
    to judge: the request goes on as if it had none (cookie or anonymous).
    """
    if not authorization:
        return None
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != _SCHEME or not credential or not _is_ours(credential):
        return None
    return credential


def carries_our_token(header_value: str) -> bool:
    """Whether a header value is ``Bearer <one of our tokens>`` (kept out of session tokens)."""
    return _bearer_credential(header_value) is not None


def _check(credential: str, app_name: str) -> Any:
    """The active user that ``credential`` names for ``app_name``; BearerTokenRefused otherwise (sync: ORM)."""
    import jwt

    from .models import BearerToken

    try:
        claims = jwt.decode(
            credential, signing_key(), algorithms=[ALGORITHM],
            audience=[audience(), audience(app_name)],
            options={"require": ["sub", "exp", "iat", "jti", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise BearerTokenRefused("the bearer token has expired; issue a new one with manage.py bokeh_token") from None
    except jwt.InvalidAudienceError:
        raise BearerTokenRefused(
            f"the bearer token is not for app {app_name!r} of this site ({site_name()}); "
            "issue one without --app, or with --app " + app_name
        ) from None
    except jwt.InvalidTokenError as exc:
        raise BearerTokenRefused(f"the bearer token is not valid here ({exc})") from None
    row = BearerToken.objects.filter(jti=str(claims["jti"])).select_related("user").first()
    if row is None or str(row.user.pk) != str(claims["sub"]):
        raise BearerTokenRefused("the bearer token is unknown to this site; issue a new one with manage.py bokeh_token")
    if row.revoked_at is not None:
        raise BearerTokenRefused(
            f"the bearer token {row.jti} was revoked at {row.revoked_at:%Y-%m-%d %H:%M:%S} UTC "
            "(revoked by id, or its user signed out or was deactivated); issue a new one"
        )
    if not row.user.is_active:
        raise BearerTokenRefused(f"the bearer token's user {row.user.pk} is deactivated")
    return row.user


async def user_for_request(request: HttpRequest, app_name: str) -> Any:
    """The user of a page/autoload.js/metadata request's bearer token; None without one."""
    credential = _bearer_credential(request.headers.get("Authorization"))
    if credential is None:
        return None
    return await sync_to_async(_check)(credential, app_name)


async def user_for_scope(scope: dict[str, Any], app_name: str) -> Any:
    """The user of a WebSocket upgrade's bearer token; None without one."""
    values = [value for name, value in scope.get("headers", []) if name.lower() == b"authorization"]
    if len(values) > 1:
        raise BearerTokenRefused("the upgrade carries more than one Authorization header")
    credential = _bearer_credential(values[0].decode("latin-1") if values else None)
    if credential is None:
        return None
    from channels.db import database_sync_to_async

    # database_sync_to_async: closes stale connections in the thread, as the WebSocket
    # consumer's handlers do not (BokehConsumer.dispatch).
    return await database_sync_to_async(_check)(credential, app_name)


def refusal_response(exc: BearerTokenRefused) -> Any:
    """401 with the reason, in the body and in ``WWW-Authenticate`` (RFC 6750)."""
    from django.http import HttpResponse

    logger.warning("Refused a bearer token: %s", exc.reason)
    response = HttpResponse(f"Bearer token refused: {exc.reason}\n", status=401, content_type="text/plain; charset=utf-8")
    description = exc.reason.replace("\\", "").replace('"', "'")
    response["WWW-Authenticate"] = f'Bearer error="invalid_token", error_description="{description}"'
    return response


def revoke_token(jti: str) -> bool:
    """Revoke the token ``jti`` and close the sessions it opened; False if there is no such unrevoked token."""
    return revoke_tokens([jti]) == 1


def revoke_tokens(jtis: Iterable[str]) -> int:
    """Revoke these tokens and close the sessions they opened, in every process; how many were revoked.

    Sync (ORM, then a bounded broadcast): call it from views, admin actions and commands.
    """
    from .models import BearerToken

    now = datetime.datetime.now(datetime.UTC)
    revoked: list[list[str]] = []
    for row in BearerToken.objects.filter(jti__in=list(jtis), revoked_at__isnull=True).only("jti", "user_id"):
        # One row at a time: a concurrent revocation of the same token counts (and broadcasts) once.
        if BearerToken.objects.filter(jti=row.jti, revoked_at__isnull=True).update(revoked_at=now):
            revoked.append([row.jti, str(row.user_id)])
    if revoked:
        logger.info("Revoked bearer token(s) %s", ", ".join(jti for jti, _ in revoked))
        _tell_every_process({"type": REVOKE_TOKENS_MESSAGE, "tokens": revoked})
    return len(revoked)


def _tell_every_process(message: dict[str, Any]) -> None:
    """Broadcast ``message`` on the channel layer (as auth.revoke_user does); logs if it cannot."""
    from channels.layers import get_channel_layer

    from .cluster import BROADCAST_GROUP

    layer = get_channel_layer()
    if layer is None:
        return

    async def send() -> None:
        # Bounded: a revocation must not hang while Redis is unreachable; the database
        # already refuses the tokens, only the closing of open sessions is lost.
        await asyncio.wait_for(layer.group_send(BROADCAST_GROUP, message), 2)

    try:
        async_to_sync(send)()
    except Exception as exc:
        logger.error("Could not tell the Bokeh server processes to close the sessions of revoked bearer tokens: %s", exc)


def token_id_in_scope(scope: Mapping[str, Any]) -> str | None:
    """The ``jti`` of the bearer token a WebSocket upgrade carries, or None.

    Unverified: only for connections whose token was checked when they opened.
    """
    import jwt

    values = [value for name, value in scope.get("headers", []) if name.lower() == b"authorization"]
    credential = _bearer_credential(values[0].decode("latin-1")) if len(values) == 1 else None
    if credential is None:
        return None
    claims = jwt.decode(credential, options={"verify_signature": False, "verify_exp": False, "verify_aud": False})
    jti = claims.get("jti") if isinstance(claims, dict) else None
    return str(jti) if jti is not None else None


async def _handle_token_revocation(message: dict[str, Any]) -> None:
    """On every process: close the WebSockets (local or relayed) opened with a revoked token."""
    from .auth import connections_of

    for jti, user_pk in message["tokens"]:
        # A bearer connection is registered under its token's user (auth.register_connection).
        for consumer in connections_of(user_pk):
            if token_id_in_scope(consumer.scope) == jti:
                # Closing runs the sessions' hooks: do it aside, not in the process's message loop.
                asyncio.get_running_loop().create_task(_close(consumer, jti))


async def _close(consumer: Any, jti: str) -> None:
    try:
        await consumer.revoke(REVOKED_REASON)
    except Exception:
        logger.error("Could not close a session opened with the revoked bearer token %s", jti, exc_info=True)


async def close_sessions_of_revoked_tokens() -> None:
    """Close the WebSockets whose bearer token was revoked without this process hearing of it:
    by ``manage.py bokeh_token --revoke`` under the in-memory channel layer (another
    process), or while Redis was down. Run after each session sweep (one query)."""
    from .auth import all_connections

    by_token: dict[str, list[Any]] = {}
    for consumer in all_connections():
        jti = token_id_in_scope(consumer.scope)
        if jti is not None:
            by_token.setdefault(jti, []).append(consumer)
    if not by_token:
        return
    for jti in await sync_to_async(_revoked_among)(list(by_token)):
        logger.info("Bearer token %s was revoked: closing the sessions it opened in this process", jti)
        for consumer in by_token[jti]:
            asyncio.get_running_loop().create_task(_close(consumer, jti))


def _revoked_among(jtis: list[str]) -> list[str]:
    from django.db import close_old_connections

    from .models import BearerToken

    try:
        return list(BearerToken.objects.filter(jti__in=jtis, revoked_at__isnull=False).values_list("jti", flat=True))
    finally:
        close_old_connections()


def install() -> None:
    """Let this process hear of revoked bearer tokens, wherever they are revoked, and re-check
    the tokens of its connections after each session sweep."""
    from .cluster import membership
    from .sessions import runtime

    membership.on(REVOKE_TOKENS_MESSAGE, _handle_token_revocation)
    if close_sessions_of_revoked_tokens not in runtime.sweep_checks:
        runtime.sweep_checks.append(close_sessions_of_revoked_tokens)


def revoke_user_tokens(user_pk: Any, at: float) -> int:
    """Revoke every token of ``user_pk`` issued up to ``at`` (epoch seconds); how many."""
    from .models import BearerToken

    moment = datetime.datetime.fromtimestamp(at, datetime.UTC)
    model = get_user_model()
    return BearerToken.objects.filter(
        user_id=model._meta.pk.to_python(user_pk), revoked_at__isnull=True, issued_at__lte=moment,
    ).update(revoked_at=moment)

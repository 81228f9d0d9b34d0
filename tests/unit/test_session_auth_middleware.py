"""routing.SessionAuthMiddleware: anonymous upgrades get AnonymousUser without a copy of the scope."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser

from bokehserve_django.routing import SessionAuthMiddleware


async def test_an_upgrade_without_a_session_cookie_gets_the_anonymous_user_in_its_own_scope() -> None:
    seen: list[dict[str, Any]] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)

    scope = {"type": "websocket", "path": "/app/ws", "headers": [(b"host", b"127.0.0.1:5006")]}
    await SessionAuthMiddleware(inner)(scope, None, None)
    # The same dict (a copy would be held as long as the WebSocket), now with the user.
    assert seen == [scope] and seen[0] is scope
    assert isinstance(scope["user"], AnonymousUser)

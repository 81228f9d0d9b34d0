"""Decides where a session id is served: here, relayed to its owner, created here, or gone.

The one place that answers that question for the page view, the WebSocket consumer and the
owner side of a relay. A session id is *new* when no live process owns it (a record left
by a dead process is taken over); creating it here is decided atomically in Redis, so an
app runs once per session id across the cluster.

A token minted for a page (``PAGE_TOKEN_KEY`` in its payload) belongs to a session that
was created with that page: if such a session no longer exists anywhere, it is *gone*,
and the browser must reload rather than get a fresh document under the old id (BokehJS
cannot replace its models with another session's). Tokens from ``bokeh.client`` carry no
such mark, and their sessions are created at WebSocket connect, as under bokeh serve.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass
from typing import Any

from .. import metrics
from ..conf import bokeh_settings
from ..exceptions import ClusterUnavailable, NotAccepting, SessionsUnavailable
from .membership import membership, owner_key

__all__ = ("PAGE_TOKEN_KEY", "Placement", "Where", "is_page_token", "locate", "refuse_new_sessions_if_stopping")

logger = logging.getLogger(__name__)

#: Token payload key set on tokens that pages and autoload.js hand to the browser.
PAGE_TOKEN_KEY = "bokehserve_page"

#: Attempts to settle who owns an id when other processes race for it at the same moment.
_ATTEMPTS = 3


class Where(enum.Enum):
    LOCAL = "local"        # this process holds the session (or is creating it)
    RELAYED = "relayed"    # another live process holds it: relay to ``owner``
    NEW = "new"            # nobody holds it and this process has claimed it: create it here
    GONE = "gone"          # a page's session that no longer exists anywhere


@dataclass(frozen=True)
class Placement:
    where: Where
    owner: str | None = None


def is_page_token(payload: dict[str, Any]) -> bool:
    return bool(payload.get(PAGE_TOKEN_KEY))


def refuse_new_sessions_if_stopping() -> None:
    from ..sessions import runtime

    if not runtime.accepting:
        raise NotAccepting("This server is restarting; new sessions are created by the others.", retry_after=1)


def unavailable(detail: str = "") -> ClusterUnavailable:
    reason = "The session store (Redis) is unreachable, so new sessions cannot be created right now"
    return ClusterUnavailable(f"{reason}{detail}; retry shortly.", retry_after=bokeh_settings.UNAVAILABLE_RETRY_AFTER)


async def locate(app_name: str, session_id: str, *, must_exist: bool) -> Placement:
    """Where ``session_id`` of ``app_name`` is served; claims it for this process when new.

    Raises ``ClusterUnavailable`` when Redis is needed and unreachable, and ``NotAccepting``
    when this process is stopping and the session would be new.
    """
    try:
        return await _locate(app_name, session_id, must_exist)
    except SessionsUnavailable as exc:
        metrics.session_refused(app_name, exc)
        raise


async def _locate(app_name: str, session_id: str, must_exist: bool) -> Placement:
    from ..sessions import runtime

    if runtime.app(app_name).has(session_id):
        return Placement(Where.LOCAL)
    if not membership.distributed:
        if must_exist:
            return Placement(Where.GONE)
        refuse_new_sessions_if_stopping()
        return Placement(Where.NEW)
    if membership.known_down:
        raise unavailable()
    try:
        return await _locate_in_cluster(app_name, session_id, must_exist)
    except (ClusterUnavailable, NotAccepting):
        raise
    except Exception as exc:  # a Redis error mid-way
        logger.warning("Could not find the owner of session %r of app %r: %s", session_id, app_name, exc)
        raise unavailable() from exc


async def _locate_in_cluster(app_name: str, session_id: str, must_exist: bool) -> Placement:
    key = owner_key(app_name, session_id)
    me = membership.process_channel
    waited_for_restart = False
    for _ in range(_ATTEMPTS):
        owner = await membership.owner_of(key)
        # One liveness look per attempt (a Redis round trip on every relayed open).
        owner_alive = owner is not None and (owner == me or await membership.is_alive(owner))
        if not owner_alive:
            # Right after a Redis restart, records and liveness keys reappear as owners beat
            # again: until then an existing session only looks unowned.
            remaining = await membership.settle_remaining()
            if remaining > 0 and not waited_for_restart:
                waited_for_restart = True
                await asyncio.sleep(remaining)
                continue
        if owner == me:
            # Our record without a local session: it was destroyed a moment ago.
            if must_exist:
                return Placement(Where.GONE)
            refuse_new_sessions_if_stopping()
            return Placement(Where.NEW)
        if owner_alive:
            return Placement(Where.RELAYED, owner)
        if must_exist:
            return Placement(Where.GONE)
        refuse_new_sessions_if_stopping()
        if owner is None:
            if await membership.claim(key):
                return Placement(Where.NEW)
        elif await membership.take_over(key, owner):
            logger.info("Took over session %r of app %r from a dead process", session_id, app_name)
            return Placement(Where.NEW)
        # Another process won the race for this id: look again to find it.
    raise unavailable(" (its owner record keeps changing)")


async def release(app_name: str, session_id: str) -> None:
    """Forget this process's record of a session it destroyed."""
    await membership.release(owner_key(app_name, session_id))

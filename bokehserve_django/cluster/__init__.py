"""Shares sessions between processes: ownership, relays, broadcast and the process lifecycle.

The one public face of the cross-process layer; the rest of bokehserve_django imports from
here, never from the modules inside:

- ``ensure_started`` / ``stop_process`` / ``cut_drain_short``: the process lifecycle
  (``lifecycle``), including the graceful drain;
- ``locate`` and ``Placement``/``Where``: where a session id is served (``placement``);
- ``EdgeRelay`` and ``request_page``: the edge end of a relayed WebSocket or page (``relay``);
- ``membership``: this process's channel, Redis liveness and records (``membership``);
- ``broadcast``: events from Django code to live sessions in every process;
- ``inventory``: every process's live sessions, and an operator's commands to them (the admin).

Nothing in this package imports consumers, views or auth; apps.py plugs those in with
``configure``.
"""

from __future__ import annotations

from . import inventory
from .lifecycle import (
    LifecycleMiddleware,
    configure,
    cut_drain_short,
    ensure_started,
    install_shutdown_trigger,
    stop_process,
)
from .membership import BROADCAST_GROUP, membership, redis_host, write_shared
from .placement import PAGE_TOKEN_KEY, Placement, Where, is_page_token, locate
from .relay import EdgeRelay, owner_relays, request_page

__all__ = (
    "BROADCAST_GROUP",
    "PAGE_TOKEN_KEY",
    "EdgeRelay",
    "LifecycleMiddleware",
    "Placement",
    "Where",
    "configure",
    "cut_drain_short",
    "ensure_started",
    "install_shutdown_trigger",
    "inventory",
    "is_page_token",
    "locate",
    "membership",
    "owner_relays",
    "redis_host",
    "request_page",
    "stop_process",
    "write_shared",
)

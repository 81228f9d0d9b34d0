"""Liveness and readiness probes for load balancers and orchestrators, answered before Django.

``GET <prefix>/healthz`` (liveness) answers 200 as long as this process's event loop runs
its requests: it looks at nothing else. ``GET <prefix>/readyz`` (readiness) answers 200
while the process takes new sessions, and 503 with a short JSON reason while it does not:

- ``draining``: the process is stopping (SIGTERM, lifespan shutdown) and takes no new
  sessions (docs/cluster.md);
- ``redis``: the channel layer is channels-redis and its Redis is unreachable, or not yet
  reached since start-up, so sessions cannot be placed in the cluster;
- ``starting``: an app's ``on_server_loaded`` still runs (bokeh serve runs them all before
  it listens; here sessions of that app wait for it), or Bokeh serving failed to start in
  this process (the log says why);
- ``busy``: every thread of the app-code pool is taken (``APP_CODE_THREADS``; slow or hung
  app code), so a new session would wait for one.

Both are answered in the ASGI layer, ahead of Django's middleware: no sign-in, session
or CSRF cookie, database query or ``ALLOWED_HOSTS`` check (an orchestrator probes with the
pod's address as Host). The paths come from ``BOKEHSERVE["LIVENESS_PATH"]`` and
``["READINESS_PATH"]`` (None turns one off), under the prefix. ``bokeh_asgi_application``
includes this middleware; a site with its own ASGI router wraps it in ``ProbesMiddleware``.
"""

from __future__ import annotations

import json
from typing import Any

from .conf import bokeh_settings

__all__ = ("ProbesMiddleware", "readiness")

_HEADERS = [
    (b"content-type", b"application/json"),
    # Never cached by a proxy: each probe must reach the process.
    (b"cache-control", b"no-store"),
]


#: How long a readiness probe waits for on_server_loaded hooks in progress (well inside the
#: 1 s a Kubernetes probe allows by default).
_LOAD_WAIT = 0.25


async def readiness() -> tuple[bool, str, str]:
    """(ready, reason, detail): whether this process takes new sessions now, and why not."""
    from . import hooks
    from .cluster import ensure_started, membership
    from .exceptions import NotAccepting
    from .sessions import runtime

    if membership.draining or not runtime.accepting:
        return False, "draining", "This process is stopping and takes no new sessions."
    try:
        await ensure_started()
    except NotAccepting:
        return False, "draining", "This process is stopping and takes no new sessions."
    except Exception as exc:  # noqa: BLE001 (any start failure means "not ready"; it is logged there)
        return False, "starting", f"Bokeh serving could not start in this process: {type(exc).__name__}."
    if membership.distributed and not membership.connected:
        if membership.known_down:
            return False, "redis", "Redis (the channel layer) is unreachable: new sessions cannot be placed."
        return False, "redis", "Redis (the channel layer) has not been reached yet since start-up."
    # A start-up's hooks are mostly no-ops, done within milliseconds: the probe that started
    # the runtime waits for them briefly rather than answer 503 for nothing.
    if loading := await runtime.loading_apps(wait=_LOAD_WAIT):
        # Their hooks hold app-code threads too: this is start-up, not a busy pool.
        return False, "starting", f"on_server_loaded still runs for {', '.join(loading)}."
    if hooks.pool_saturated():
        return False, "busy", "Every app-code thread is taken (APP_CODE_THREADS): new sessions would wait for one."
    return True, "ready", "This process takes new sessions."


def _probe_paths() -> dict[str, str]:
    prefix = f"/{bokeh_settings.prefix}" if bokeh_settings.prefix else ""
    paths = {}
    for kind, path in (("live", bokeh_settings.LIVENESS_PATH), ("ready", bokeh_settings.READINESS_PATH)):
        if path is not None:
            paths[f"{prefix}/{path}"] = kind
    return paths


class ProbesMiddleware:
    """ASGI middleware answering the liveness and readiness paths; everything else goes to ``app``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "http":
            kind = _probe_paths().get(scope["path"])
            if kind is not None:
                return await self._answer(kind, scope, send)
        return await self.app(scope, receive, send)

    async def _answer(self, kind: str, scope: dict[str, Any], send: Any) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(send, 405, {"error": "Probes answer GET and HEAD only."}, head=False, allow=True)
            return
        if kind == "live":
            status, body = 200, {"status": "alive"}
        else:
            ready, reason, detail = await readiness()
            status, body = (200 if ready else 503), {"ready": ready, "reason": reason, "detail": detail}
        await _respond(send, status, body, head=scope["method"] == "HEAD")


async def _respond(send: Any, status: int, body: dict[str, Any], *, head: bool, allow: bool = False) -> None:
    content = json.dumps(body).encode() + b"\n"
    headers = [*_HEADERS, (b"content-length", str(len(content)).encode())]
    if allow:
        headers.append((b"allow", b"GET, HEAD"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else content})

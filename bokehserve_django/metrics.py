"""Counts and times what this process serves, and answers Prometheus scrapes at ``<prefix>/metrics``.

Needs the optional ``prometheus-client`` package (``pip install "bokehserve-django[metrics]"``).
Without it every function here is a no-op and the metrics path answers 501 with the install
command; nothing imports ``prometheus_client`` elsewhere. Other modules report events with
one-line calls (``metrics.session_created(app)``); gauges that describe state (sessions,
connections, relays, Redis, memory) are sampled from the session runtime and the cluster
once a second by a task on the event loop, which also measures the loop's lag, and again
at each scrape. Label values come from fixed sets or from registered app names only: no
session id, user or address ever becomes a label. docs/operations.md "Metrics" describes
each metric; under ``runbokeh --num-procs`` the workers share a directory of metric files
(prometheus_client's multi-process mode), so a scrape of any worker shows all of them.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import hmac
import ipaddress
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .conf import bokeh_settings

try:
    import prometheus_client
except ImportError:  # the [metrics] extra is not installed: everything below is a no-op
    prometheus_client = None

__all__ = (
    "INSTALL_HINT",
    "MetricsMiddleware",
    "app_code_timing",
    "enabled",
    "message_received",
    "message_sent",
    "prepare_workers",
    "relay_answer_arrived",
    "relay_open_sent",
    "sample",
    "scrape_allowed",
    "session_created",
    "session_destroyed",
    "session_refused",
    "start_sampling",
    "stop_sampling",
    "timed_app_code",
    "watch_workers",
)

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "bokehserve-django[metrics]"'
#: prometheus_client's multi-process mode: the directory where every process writes its values.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Seconds between two samples of the gauges (and two measurements of the loop's lag).
SAMPLE_INTERVAL = 1.0

#: Every Bokeh message type (bokeh/protocol/messages); anything else is counted as "other".
MESSAGE_TYPES = frozenset({
    "ACK", "ERROR", "OK", "PATCH-DOC", "PULL-DOC-REQ", "PULL-DOC-REPLY", "PUSH-DOC",
    "SERVER-INFO-REQ", "SERVER-INFO-REPLY",
})
#: The values of ``reason`` on bokehserve_sessions_refused_total.
REFUSAL_REASONS = (
    "process_full", "user_limit", "address_limit", "draining", "redis", "app_error", "refused", "error",
)

# The multi-process directory is read once, as prometheus_client does when it is imported:
# a process started without it keeps its values in memory.
_MULTIPROC_DIR = os.environ.get(MULTIPROC_ENV) if prometheus_client is not None else None

_T = TypeVar("_T")


class _Metrics:
    """Every metric of this process, in a registry of our own (a site's default registry is its own)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry = CollectorRegistry(auto_describe=True)
        # multiprocess_mode: how the values of several processes combine (live*: only processes
        # still running count; runbokeh marks a stopped worker dead).
        self.sessions = Gauge(
            "bokehserve_sessions", "Live sessions held by this process (all processes under --num-procs).",
            ["app"], registry=registry, multiprocess_mode="livesum",
        )
        self.connections = Gauge(
            "bokehserve_connections", "WebSocket connections attached to live sessions, local or relayed in.",
            ["app"], registry=registry, multiprocess_mode="livesum",
        )
        self.created = Counter(
            "bokehserve_sessions_created", "Sessions created (app code run).", ["app"], registry=registry,
        )
        self.destroyed = Counter(
            "bokehserve_sessions_destroyed", "Sessions destroyed (expired, closed, signed out, shut down).",
            ["app"], registry=registry,
        )
        self.refused = Counter(
            "bokehserve_sessions_refused", "New sessions (and reconnects, while Redis is down) refused, by reason.",
            ["app", "reason"], registry=registry,
        )
        self.messages = Counter(
            "bokehserve_messages", "Bokeh protocol messages, by direction (in: from clients) and type.",
            ["direction", "msgtype"], registry=registry,
        )
        self.message_bytes = Counter(
            "bokehserve_message_bytes", "Bytes of Bokeh protocol messages (all frames), by direction and type.",
            ["direction", "msgtype"], registry=registry,
        )
        self.app_code = Histogram(
            "bokehserve_app_code_seconds", "Seconds app code ran to build a session's document.",
            ["app"], registry=registry, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.app_code_queue = Histogram(
            "bokehserve_app_code_queue_seconds", "Seconds a new session waited for an app-code thread.",
            ["app"], registry=registry, buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.relay_round_trip = Histogram(
            "bokehserve_relay_round_trip_seconds",
            "Seconds from a relayed connection's open request to its owner process's first answer.",
            registry=registry, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.relayed = Gauge(
            "bokehserve_relayed_connections",
            "Relayed WebSocket connections: edge (client here, session elsewhere), owner (the reverse).",
            ["side"], registry=registry, multiprocess_mode="livesum",
        )
        self.loop_lag = Histogram(
            "bokehserve_event_loop_lag_seconds", "Seconds by which a timer on the event loop fired late.",
            registry=registry, buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.rss = Gauge(
            "bokehserve_process_resident_memory_bytes", "Resident memory (RSS) of the serving processes.",
            registry=registry, multiprocess_mode="livesum",
        )
        self.processes = Gauge(
            "bokehserve_processes", "Serving processes whose metrics this scrape includes.",
            registry=registry, multiprocess_mode="livesum",
        )
        # Created at the first sample that finds Redis configured: without Redis there is
        # nothing to be reachable, and a constant 0 would page someone.
        self._redis_up: Any = None
        #: Apps sampled so far: an app no longer in the runtime (shut down) goes back to 0.
        self.apps_seen: set[str] = set()

    def redis_up(self) -> Any:
        if self._redis_up is None:
            from prometheus_client import Gauge

            self._redis_up = Gauge(
                "bokehserve_redis_up", "1 while the last heartbeat reached Redis (the lowest of all processes).",
                registry=self.registry, multiprocess_mode="livemin",
            )
        return self._redis_up


_metrics: _Metrics | None = _Metrics() if prometheus_client is not None else None


def enabled() -> bool:
    """Whether metrics are collected (prometheus-client is installed)."""
    return _metrics is not None


# ---------------------------------------------------------------------------
# Events, reported by the session layer, the connections and the relay
# ---------------------------------------------------------------------------


def session_created(app: str) -> None:
    if _metrics is not None:
        _metrics.created.labels(app).inc()


def session_destroyed(app: str) -> None:
    if _metrics is not None:
        _metrics.destroyed.labels(app).inc()


def session_refused(app: str, exc: _T) -> _T:
    """Count a refused new session of ``app`` under the reason ``exc`` stands for; return ``exc``.

    Returning it lets a caller write ``raise metrics.session_refused(app, NotAccepting(...))``.
    A cancellation (not an Exception) is not a refusal and is not counted.
    """
    if _metrics is not None:
        reason = refusal_reason(exc)
        if reason is not None:
            _metrics.refused.labels(app, reason).inc()
    return exc


def refusal_reason(exc: Any) -> str | None:
    """The ``reason`` label (one of REFUSAL_REASONS) for an exception that refused a session."""
    from .exceptions import AppLoadError, ClusterUnavailable, NotAccepting, ProcessFull, SessionRefused

    if isinstance(exc, ProcessFull):
        return "process_full"
    if isinstance(exc, ClusterUnavailable):
        return "redis"
    if isinstance(exc, NotAccepting):
        return "draining"
    if isinstance(exc, AppLoadError):
        return "app_error"
    if isinstance(exc, SessionRefused):
        # The per-user and per-address caps raise the same class; their messages name the
        # setting (sessions.SessionRuntime.check_capacity), which tests/unit/test_metrics.py pins.
        text = str(exc)
        if "MAX_SESSIONS_PER_USER" in text:
            return "user_limit"
        if "MAX_SESSIONS_PER_ADDRESS" in text:
            return "address_limit"
        return "refused"
    if isinstance(exc, Exception):
        return "error"
    return None


def message_received(message: Any) -> None:
    """A complete Bokeh message arrived from a client."""
    if _metrics is not None:
        _count_message("in", message)


def message_sent(message: Any) -> None:
    """A complete Bokeh message went to a client (its JSON parts are cached by then)."""
    if _metrics is not None:
        _count_message("out", message)


#: (direction, msgtype) -> its (messages, bytes) counter children: labels() costs a lock and
#: a lookup, and this runs for every message.
_message_counters: dict[tuple[str, str], tuple[Any, Any]] = {}


def _count_message(direction: str, message: Any) -> None:
    assert _metrics is not None
    msgtype = message.msgtype if message.msgtype in MESSAGE_TYPES else "other"
    counters = _message_counters.get((direction, msgtype))
    if counters is None:
        counters = _message_counters[direction, msgtype] = (
            _metrics.messages.labels(direction, msgtype), _metrics.message_bytes.labels(direction, msgtype)
        )
    counters[0].inc()
    counters[1].inc(message_size(message))


def message_size(message: Any) -> int:
    """Bytes of all frames of ``message`` on the wire (text frames as UTF-8)."""
    size = _utf8_length(message.header_json) + _utf8_length(message.metadata_json) + _utf8_length(message.content_json)
    for buffer in message.buffers:
        data = buffer.data
        size += _utf8_length(json.dumps(buffer.ref)) + (data.nbytes if isinstance(data, memoryview) else len(data))
    return size


def _utf8_length(text: str) -> int:
    # isascii() is a fast scan; encoding is needed only for the rare non-ASCII document.
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def app_code_timing(app: str, queued_seconds: float, run_seconds: float) -> None:
    """A session's app code waited ``queued_seconds`` for a thread, then ran ``run_seconds``."""
    if _metrics is not None:
        _metrics.app_code_queue.labels(app).observe(queued_seconds)
        _metrics.app_code.labels(app).observe(run_seconds)


def timed_app_code(app: str, func: Callable[..., _T]) -> Callable[..., _T]:
    """``func`` wrapped to report its queue wait (from now to its start) and its run time.

    Wrap at submission: ``executor.submit(metrics.timed_app_code(app, run), ...)``.
    """
    if _metrics is None:
        return func
    submitted = time.perf_counter()

    def timed(*args: Any, **kwargs: Any) -> _T:
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            app_code_timing(app, started - submitted, time.perf_counter() - started)

    return timed


#: EdgeRelay -> when its open request left, until the owner's first answer arrives.
_relay_opens: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def relay_open_sent(relay: Any) -> None:
    """An edge asked the owner process to attach a relayed client."""
    if _metrics is not None:
        _relay_opens[relay] = time.perf_counter()


def relay_answer_arrived(relay: Any) -> None:
    """Frames from the owner reached the edge; the first ones close the open's round trip."""
    if _metrics is not None:
        started = _relay_opens.pop(relay, None)
        if started is not None:
            _metrics.relay_round_trip.observe(time.perf_counter() - started)


# ---------------------------------------------------------------------------
# Sampled state, and the event loop's lag
# ---------------------------------------------------------------------------


def sample() -> None:
    """Set the state gauges from the session runtime and the cluster (on the event loop)."""
    if _metrics is None:
        return
    from .cluster import membership, owner_relays
    from .cluster.relay import edge_count
    from .sessions import resident_memory, runtime

    stats = runtime.stats()
    for app in _metrics.apps_seen - set(stats):
        _metrics.sessions.labels(app).set(0)
        _metrics.connections.labels(app).set(0)
    for app, counts in stats.items():
        _metrics.sessions.labels(app).set(counts["sessions"])
        _metrics.connections.labels(app).set(counts["connections"])
        # Counters exist from the start, so that rate() sees their first increase.
        _metrics.created.labels(app)
        _metrics.destroyed.labels(app)
    _metrics.apps_seen |= set(stats)
    _metrics.relayed.labels("edge").set(edge_count())
    _metrics.relayed.labels("owner").set(owner_relays.count)
    if membership.distributed:
        _metrics.redis_up().set(1 if membership.connected else 0)
    _metrics.rss.set(resident_memory())
    _metrics.processes.set(1)


_sampler: asyncio.Task[None] | None = None


def start_sampling() -> None:
    """Start the sampling task on the running loop, once per loop."""
    global _sampler
    if _metrics is None:
        return
    loop = asyncio.get_running_loop()
    if _sampler is not None and not _sampler.done() and _sampler.get_loop() is loop:
        return
    _sampler = loop.create_task(_sample_forever(loop), name="bokehserve-metrics")


async def stop_sampling() -> None:
    global _sampler
    task, _sampler = _sampler, None
    if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _sample_forever(loop: asyncio.AbstractEventLoop) -> None:
    assert _metrics is not None
    while True:
        due = loop.time() + SAMPLE_INTERVAL
        await asyncio.sleep(SAMPLE_INTERVAL)
        # asyncio.sleep is a call_later: how late it wakes is how long the loop was busy.
        _metrics.loop_lag.observe(max(0.0, loop.time() - due))
        try:
            sample()
        except Exception:
            logger.error("Sampling the metrics failed", exc_info=True)


# ---------------------------------------------------------------------------
# Several worker processes (runbokeh --num-procs)
# ---------------------------------------------------------------------------


def prepare_workers() -> None:
    """Before starting --num-procs workers: give them one fresh directory for their metric files.

    The workers inherit PROMETHEUS_MULTIPROC_DIR, so a scrape of any of them shows the sum
    of all. The directory is removed when this (the parent) process exits. One the operator
    set is used as it is, and left in place (they must empty it before each start).
    """
    if prometheus_client is None or os.environ.get(MULTIPROC_ENV):
        return
    directory = tempfile.mkdtemp(prefix="bokehserve-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    atexit.register(shutil.rmtree, directory, True)


def watch_workers(workers: Iterable[Any]) -> None:
    """Mark each worker (a ``subprocess.Popen``) dead in the metric files when it exits.

    Without that, a killed worker's last session count would stay in the live gauges.
    """
    if prometheus_client is None or not os.environ.get(MULTIPROC_ENV):
        return
    threading.Thread(
        target=_mark_dead_workers, args=(list(workers),), name="bokehserve-metrics-workers", daemon=True
    ).start()


def _mark_dead_workers(workers: list[Any]) -> None:
    from prometheus_client import multiprocess

    running = list(workers)
    while running:
        time.sleep(SAMPLE_INTERVAL)
        for worker in list(running):
            if worker.poll() is not None:
                multiprocess.mark_process_dead(worker.pid)
                running.remove(worker)


# ---------------------------------------------------------------------------
# Who may scrape
# ---------------------------------------------------------------------------


async def scrape_allowed(scope: dict[str, Any]) -> bool:
    """Whether this HTTP request may read the metrics.

    Loopback and INTERNAL_IPS addresses (METRICS_ALLOW_INTERNAL) and the bearer token
    (METRICS_BEARER_TOKEN) are decided without touching the database; staff users
    (METRICS_ALLOW_STAFF) need their Django session read.
    """
    if bokeh_settings.METRICS_ALLOW_INTERNAL and internal_client(scope):
        return True
    token = bokeh_settings.METRICS_BEARER_TOKEN
    if token is not None and bearer_matches(scope, token):
        return True
    if bokeh_settings.METRICS_ALLOW_STAFF:
        return await _staff_user(scope)
    return False


def internal_client(scope: dict[str, Any]) -> bool:
    """Whether the client is loopback or listed in Django's INTERNAL_IPS (addresses or networks).

    No address (a Unix socket) is not internal: a proxy in front would make every visitor so.
    A request that came through a proxy (it carries X-Forwarded-For, X-Real-IP or Forwarded)
    is internal only if every address those headers name is too: a proxy on the same host
    makes every visitor's connection come from loopback, and the visitor's own address is
    what the proxy adds. (A visitor can put addresses of their choice first, not remove the
    one the proxy appends.)
    """
    client = scope.get("client")
    if not client or not client[0]:
        return False
    return all(_is_internal_address(address) for address in [client[0], *_forwarded_addresses(scope)])


def _is_internal_address(text: str) -> bool:
    from django.conf import settings

    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if address.is_loopback:
        return True
    for entry in getattr(settings, "INTERNAL_IPS", ()):
        try:
            if address in ipaddress.ip_network(str(entry), strict=False):
                return True
        except ValueError:
            continue  # not an address: Django's own use of INTERNAL_IPS ignores it too
    return False


def _forwarded_addresses(scope: dict[str, Any]) -> list[str]:
    """The client addresses named by the proxy headers of a request (none for a direct one)."""
    addresses: list[str] = []
    for name, value in scope.get("headers", []):
        text = value.decode("latin-1")
        if name in (b"x-forwarded-for", b"x-real-ip"):
            addresses.extend(part.strip() for part in text.split(","))
        elif name == b"forwarded":
            for element in text.replace(";", ",").split(","):
                key, _, address = element.strip().partition("=")
                if key.lower() == "for":
                    address = address.strip('"')
                    if address.startswith("["):  # for="[2001:db8::1]:4711"
                        address = address[1:].partition("]")[0]
                    elif address.count(":") == 1:  # for=192.0.2.60:4711
                        address = address.partition(":")[0]
                    addresses.append(address)
    # An empty or unparsable entry counts as an outside address (never internal).
    return addresses


def bearer_matches(scope: dict[str, Any], token: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>`` (compared in constant time)."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, given = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
                return True
    return False


async def _staff_user(scope: dict[str, Any]) -> bool:
    from importlib import import_module

    from channels.auth import get_user
    from django.conf import settings
    from django.http.cookie import parse_cookie

    cookies = parse_cookie(b"; ".join(v for n, v in scope.get("headers", []) if n == b"cookie").decode("latin-1"))
    session_key = cookies.get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        return False
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = await get_user({**scope, "session": session})
    return bool(user.is_active and user.is_staff)


# ---------------------------------------------------------------------------
# The scrape
# ---------------------------------------------------------------------------


def metrics_path() -> str | None:
    """The metrics path under the prefix, or None when METRICS_PATH turns it off."""
    path = bokeh_settings.METRICS_PATH
    if path is None:
        return None
    return f"/{bokeh_settings.prefix}/{path}" if bokeh_settings.prefix else f"/{path}"


def exposition(accept: str | None) -> tuple[bytes, str]:
    """(body, content type) of a scrape: Prometheus text, or OpenMetrics if ``accept`` asks for it."""
    assert prometheus_client is not None
    from prometheus_client.exposition import choose_encoder

    if _MULTIPROC_DIR:
        from prometheus_client import CollectorRegistry, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=_MULTIPROC_DIR)
    else:
        assert _metrics is not None
        registry = _metrics.registry
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


class MetricsMiddleware:
    """ASGI middleware answering ``GET <prefix>/<METRICS_PATH>``; everything else goes to ``app``.

    Answered ahead of Django, as the probes are: a loopback or INTERNAL_IPS scrape, or one
    with the bearer token, costs no database query and no Redis round trip.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "http" and scope["path"] == metrics_path():
            return await self._answer(scope, send)
        return await self.app(scope, receive, send)

    async def _answer(self, scope: dict[str, Any], send: Any) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(send, 405, b"Metrics answer GET and HEAD only.\n", extra=[(b"allow", b"GET, HEAD")])
            return
        if not await scrape_allowed(scope):
            logger.info("Refused a metrics scrape from %s", (scope.get("client") or ["a Unix socket"])[0])
            await _respond(send, 403, (
                b"Metrics are served to loopback and INTERNAL_IPS addresses; others need the bearer token "
                b"of BOKEHSERVE['METRICS_BEARER_TOKEN'] or, with METRICS_ALLOW_STAFF, a staff sign-in.\n"
            ))
            return
        if _metrics is None:
            _warn_not_installed()
            await _respond(send, 501, (
                f"Prometheus metrics need the prometheus-client package: {INSTALL_HINT}\n".encode()
            ))
            return
        start_sampling()
        sample()  # this process's gauges are current; under --num-procs the others' are <= 1 s old
        accept = next((v.decode("latin-1") for n, v in scope.get("headers", []) if n == b"accept"), None)
        # Reading the multi-process files is blocking I/O: off the loop.
        body, content_type = await asyncio.to_thread(exposition, accept)
        await _respond(send, 200, b"" if scope["method"] == "HEAD" else body, content_type=content_type,
                       length=len(body))


@functools.cache
def _warn_not_installed() -> None:
    # Once per process: the operator set up scraping and gets no metrics.
    logger.warning("A metrics scrape came, but prometheus-client is not installed: %s", INSTALL_HINT)


async def _respond(send: Any, status: int, body: bytes, *, content_type: str = "text/plain; charset=utf-8",
                   extra: list[tuple[bytes, bytes]] | None = None, length: int | None = None) -> None:
    headers = [
        (b"content-type", content_type.encode("latin-1")),
        (b"cache-control", b"no-store"),
        (b"content-length", str(len(body) if length is None else length).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

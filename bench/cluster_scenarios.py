"""Pieces of the cluster bench (bench/cluster.py): a throwaway redis-server, runbokeh clusters on it,
a session opener that can take the page from one port and the WebSocket from another, and the
measurements.

Every process here is started by the bench and stopped by its PID (servers.Server for runbokeh:
SIGTERM to the parent, which forwards it to its --num-procs workers, then to any worker seen that
is still alive). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from bokeh.util.token import get_session_id
from client import (
    Message,
    Session,
    _gist,
    find_model_id,
    http_get,
    iter_events,
)
from servers import HOST, Server, cpu_seconds, free_port

REDIS_SERVER = "/usr/bin/redis-server"
SETTINGS = "bench.cluster_settings"

RELAYED_RE = re.compile(r"WebSocket for session '([^']+)' of app '[^']+' relayed to its owner process")
LOCAL_RE = re.compile(r"WebSocket opened for session '([^']+)'")
READY_RE = re.compile(r"Process (\d+) on channel \S+ \(sessions shared through Redis\)")
PROBLEM_RE = re.compile(r" (WARNING|ERROR|CRITICAL) |Traceback")


@dataclass
class ClusterParams:
    warmup_opens: int = 8  # concurrent opens after start, so every process has served a few
    open_count: int = 30  # sequential opens (latency)
    tput_count: int = 80  # opens for the throughput figure ...
    tput_concurrency: int = 16  # ... this many in flight at a time
    rt_sessions: int = 20  # sessions for the round-trip figure, one after another ...
    rt_per_session: int = 20  # ... with this many round trips each (after rt_warmup)
    rt_warmup: int = 2
    relay_sessions: int = 20  # A/B: sessions per mode (local, relayed), interleaved
    relay_rt_per_session: int = 20
    timeout: float = 60.0  # any single wait

    @classmethod
    def quick(cls) -> ClusterParams:
        return cls(
            warmup_opens=4,
            open_count=10,
            tput_count=32,
            tput_concurrency=16,
            rt_sessions=8,
            rt_per_session=10,
            relay_sessions=8,
            relay_rt_per_session=10,
            timeout=30.0,
        )


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def ms(seconds: float) -> float:
    return seconds * 1000.0


# ---------------------------------------------------------------------------------------------
# Processes


class RedisProcess:
    """redis-server on 127.0.0.1 and a free port, without persistence; stopped by its PID."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.version = "?"
        self._log = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        import redis

        self.directory.mkdir(parents=True, exist_ok=True)
        self._log = open(self.directory / "redis.log", "wb")  # noqa: SIM115 - open while redis runs
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.client = redis.Redis(host=HOST, port=self.port, socket_timeout=5, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                if self.client.ping():
                    self.version = self.client.info().get("redis_version", "?")
                    return
            except redis.RedisError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING on port {self.port} within {timeout:g} s")

    def flush(self) -> None:
        """Drop the keys a previous cluster left (only while no runbokeh uses this Redis), so
        that each cluster starts as on a fresh Redis."""
        self.client.flushall()

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) if self.proc is not None else 0.0

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None


def start_runbokeh(
    app_path: Path,
    log_path: Path,
    redis_url: str,
    procs: int,
    extra: list[str] | None = None,
    timeout: float = 90.0,
) -> Server:
    """``runbokeh <app> [--num-procs N]`` on the bench's Redis, started and ready.

    Ready means: the port accepts connections (the parent binds it before it starts its
    workers), every process logged that it joined the cluster, and one page GET answers 200.
    """
    args = list(extra or [])
    if procs > 1:
        args += ["--num-procs", str(procs)]
    server = Server(
        "runbokeh",
        app_path,
        log_path,
        extra_args=args,
        env={
            "REDIS_URL": redis_url,
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "DJANGO_DEBUG": "0",
            "PYTHONUNBUFFERED": "1",
        },
    )
    t0 = time.monotonic()
    server.start(timeout)
    try:
        deadline = t0 + timeout
        while True:
            joined = set(READY_RE.findall(read_log(server)))
            if len(joined) >= procs:
                break
            if not server.alive():
                raise RuntimeError(
                    f"runbokeh exited with {server.proc.returncode}; log tail:\n{server.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {len(joined)} of {procs} processes joined the cluster within {timeout:g} s; "
                    f"log tail:\n{server.log_tail()}"
                )
            time.sleep(0.1)
        page = asyncio.run(http_get(HOST, server.port, f"/{server.app}", 30))
        if page.status != 200:
            raise RuntimeError(f"GET /{server.app} answered {page.status}: {_gist(page.body)}")
        server.remember_descendants()
        server.startup_seconds = time.monotonic() - t0
    except BaseException:
        server.stop()
        raise
    return server


def read_log(server: Server) -> str:
    try:
        return server.log_path.read_text(errors="replace")
    except OSError:
        return ""


@dataclass
class LogCounts:
    relayed: set[str] = field(default_factory=set)  # session ids whose WebSocket was relayed
    local: set[str] = field(default_factory=set)  # session ids whose WebSocket landed on the owner
    problems: list[str] = field(default_factory=list)  # WARNING/ERROR lines and tracebacks


def parse_logs(*servers: Server) -> LogCounts:
    counts = LogCounts()
    for server in servers:
        for line in read_log(server).splitlines():
            if m := RELAYED_RE.search(line):
                counts.relayed.add(m.group(1))
            elif m := LOCAL_RE.search(line):
                counts.local.add(m.group(1))
            elif PROBLEM_RE.search(line):
                counts.problems.append(line.strip())
    return counts


# ---------------------------------------------------------------------------------------------
# Client


@dataclass
class Opened:
    session: Session
    session_id: str


async def open_session(page_port: int, ws_port: int, app: str, timeout: float) -> Opened:  # noqa: ASYNC109
    """client.Session.open with the page from one port and the WebSocket to another."""
    session = await Session.open(HOST, page_port, app, timeout=timeout, ws_port=ws_port)
    try:
        find_model_id(session.doc, "echo")  # the app code really ran for this session
    except BaseException:
        await session.close()
        raise
    return Opened(session, get_session_id(session.token))


async def round_trips(s: Session, count: int, warmup: int, timeout: float) -> list[float]:  # noqa: ASYNC109
    """PATCH-DOC ``input.value`` -> the app's on_change -> PATCH-DOC ``echo.text`` back, ``count`` times."""
    input_id = find_model_id(s.doc, "input")
    echo_id = find_model_id(s.doc, "echo")

    async def once(tag: str) -> float:
        value = f"rt-{tag}-{time.monotonic_ns()}"

        def is_echo(m: Message) -> bool:
            return any(
                e.get("model", {}).get("id") == echo_id and e.get("attr") == "text" and e.get("new") == value
                for e in iter_events(m)
            )

        t0 = time.perf_counter()
        await s.set_property(input_id, "value", value)
        reply = await s.wait_for(is_echo, timeout)
        return reply.received - t0

    for i in range(warmup):
        await once(f"w{i}")
    return [await once(str(i)) for i in range(count)]


# ---------------------------------------------------------------------------------------------
# Scenarios on one cluster (runbokeh --num-procs N, one port)


async def warm_up(server: Server, p: ClusterParams) -> dict[str, float]:
    """``warmup_opens`` opens at once (not measured; its wall time is kept in the JSON as context:
    a fresh Redis may make the first claims of a new cluster wait)."""

    async def one() -> None:
        o = await open_session(server.port, server.port, server.app, p.timeout)
        await o.session.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(p.warmup_opens)))
    return {"warmup_s": time.perf_counter() - t0}


async def sequential_opens(server: Server, p: ClusterParams) -> dict[str, float]:
    """``open_count`` opens one after another: the latency of one session open."""
    totals, https, acks, pulls = [], [], [], []
    for _ in range(p.open_count):
        o = await open_session(server.port, server.port, server.app, p.timeout)
        t = o.session.timings
        totals.append(t.total)
        https.append(t.http)
        acks.append(t.ws_ack)
        pulls.append(t.pull)
        await o.session.close()
    return {
        "open_ms": ms(statistics.median(totals)),
        "open_p90_ms": ms(pct(totals, 90)),
        "open_http_ms": ms(statistics.median(https)),
        "open_ws_ack_ms": ms(statistics.median(acks)),
        "open_pull_ms": ms(statistics.median(pulls)),
    }


async def concurrent_opens(server: Server, redis: RedisProcess, p: ClusterParams) -> dict[str, float]:
    """``tput_count`` opens by ``tput_concurrency`` clients, each opening its next session as soon as
    the last one is open (the close runs in the background, as a browser tab going away). Every
    open must succeed: a failure fails the scenario."""
    remaining = p.tput_count
    totals: list[float] = []
    closes: list[asyncio.Task] = []
    last = 0.0

    async def client() -> None:
        nonlocal remaining, last
        while remaining > 0:
            remaining -= 1
            o = await open_session(server.port, server.port, server.app, p.timeout)
            last = time.perf_counter()
            totals.append(o.session.timings.total)
            closes.append(asyncio.create_task(o.session.close()))

    cpu0, rcpu0, ccpu0 = server.cpu(), redis.cpu(), time.process_time()
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*(client() for _ in range(p.tput_concurrency))), p.timeout * 3)
        elapsed = last - t0
        cpu, rcpu, ccpu = server.cpu() - cpu0, redis.cpu() - rcpu0, time.process_time() - ccpu0
    finally:
        await asyncio.wait_for(asyncio.gather(*closes, return_exceptions=True), 30)
    return {
        "tput_per_s": p.tput_count / elapsed,
        "tput_open_p50_ms": ms(pct(totals, 50)),
        "tput_open_p90_ms": ms(pct(totals, 90)),
        "tput_cpu_ms": ms(cpu / p.tput_count),
        "tput_redis_cpu_ms": ms(rcpu / p.tput_count),
        "tput_client_cpu_ms": ms(ccpu / p.tput_count),
    }


async def roundtrips_over_sessions(server: Server, p: ClusterParams) -> dict:
    """``rt_sessions`` fresh sessions one after another, ``rt_per_session`` round trips on each.

    Returns the pooled percentiles, and the raw times per session id so that the caller can split
    them into relayed and local sessions from the server log."""
    per_session: dict[str, list[float]] = {}
    for _ in range(p.rt_sessions):
        o = await open_session(server.port, server.port, server.app, p.timeout)
        try:
            per_session[o.session_id] = await round_trips(o.session, p.rt_per_session, p.rt_warmup, p.timeout)
        finally:
            await o.session.close()
    times = [t for ts in per_session.values() for t in ts]
    return {
        "rt_p50_ms": ms(pct(times, 50)),
        "rt_p90_ms": ms(pct(times, 90)),
        "_rt_by_session": per_session,
    }


def split_by_relay(per_session: dict[str, list[float]], counts: LogCounts) -> dict[str, float]:
    relayed = [t for sid, ts in per_session.items() if sid in counts.relayed for t in ts]
    local = [t for sid, ts in per_session.items() if sid in counts.local for t in ts]
    out = {}
    if relayed:
        out["rt_relayed_p50_ms"] = ms(pct(relayed, 50))
    if local:
        out["rt_local_p50_ms"] = ms(pct(local, 50))
    return out


# ---------------------------------------------------------------------------------------------
# Relay's added latency: two single-process servers A and B on the same Redis


async def relay_ab(a: Server, b: Server, p: ClusterParams) -> dict:
    """Page from the owner; WebSocket to the owner (local) or to the other server (relayed).

    Sessions alternate local / relayed, and the owner alternates between A and B, so drift and
    any difference between the two processes fall on both modes alike. Returns pooled figures
    per mode, plus the session ids per mode for the log check."""
    times: dict[str, list[float]] = {"local": [], "relayed": []}
    pulls: dict[str, list[float]] = {"local": [], "relayed": []}
    acks: dict[str, list[float]] = {"local": [], "relayed": []}
    ids: dict[str, list[str]] = {"local": [], "relayed": []}
    for i in range(p.relay_sessions):
        owner, other = (a, b) if i % 2 == 0 else (b, a)
        for mode in ("local", "relayed") if (i // 2) % 2 == 0 else ("relayed", "local"):
            edge = owner if mode == "local" else other
            o = await open_session(owner.port, edge.port, owner.app, p.timeout)
            try:
                times[mode] += await round_trips(o.session, p.relay_rt_per_session, p.rt_warmup, p.timeout)
                pulls[mode].append(o.session.timings.pull)
                acks[mode].append(o.session.timings.ws_ack)
                ids[mode].append(o.session_id)
            finally:
                await o.session.close()
    out: dict = {"_ids": ids}
    for mode in ("local", "relayed"):
        out[f"ab_{mode}_rt_p50_ms"] = ms(pct(times[mode], 50))
        out[f"ab_{mode}_rt_p90_ms"] = ms(pct(times[mode], 90))
        out[f"ab_{mode}_pull_ms"] = ms(statistics.median(pulls[mode]))
        out[f"ab_{mode}_ws_ack_ms"] = ms(statistics.median(acks[mode]))
    for key in ("rt_p50_ms", "rt_p90_ms", "pull_ms", "ws_ack_ms"):
        out[f"ab_added_{key}"] = out[f"ab_relayed_{key}"] - out[f"ab_local_{key}"]
    return out


def env_without_overrides() -> None:
    """runbokeh passes its options to its children in BOKEHSERVE_RUN_OVERRIDES: never inherit one."""
    os.environ.pop("BOKEHSERVE_RUN_OVERRIDES", None)

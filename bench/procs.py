#!/usr/bin/env python
"""Processes behind nginx: session opens per second with 1 process and with --num-procs 2.

    .venv/bin/python bench/procs.py                 # 3 runs, both servers (25 min on a busy 2-core machine)
    .venv/bin/python bench/procs.py --quick         # smaller counts, 1 run
    .venv/bin/python bench/procs.py --cases bokeh-2,runbokeh-2 --repeat 5
    .venv/bin/python bench/procs.py --profile runbokeh-2    # one case under py-spy, no figures

For each case (server and process count) it starts the server on a free port, nginx in front
of it with docs/deploy/nginx.conf (see nginx.py), and opens sessions of bench/apps/procs_widget.py
through nginx: page GET, WebSocket, ACK, PULL-DOC, with many clients at once. Cases alternate
within each run, and their order reverses from one run to the next. Measures sessions opened per
second and the CPU per open of the servers, nginx, redis-server and the bench client itself.
From the server logs it counts, per session, which processes ran the app code, and (runbokeh)
which WebSockets were relayed to their owner. Prints medians over the runs; JSON to
``bench/results/procs-<stamp>.json``, logs to ``bench/results/logs/procs-<stamp>/``. Asserts
nothing. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bokeh.util.token import get_session_id  # noqa: E402
from client import Session  # noqa: E402
from cluster import cluster_versions  # noqa: E402
from cluster_scenarios import (  # noqa: E402
    RELAYED_RE,
    RedisProcess,
    env_without_overrides,
    read_log,
    start_runbokeh,
)
from nginx import Nginx  # noqa: E402
from run import fmt, summarise  # noqa: E402
from servers import (  # noqa: E402
    HOST,
    LABELS,
    RUNBOKEH_ENV,
    VENV_BIN,
    Server,
    cpu_seconds,
    process_tree,
    versions,
)

APP = HERE / "apps" / "procs_widget.py"
RESULTS = HERE / "results"
#: The models widget.py builds; every pulled document must contain them all.
APP_MODELS = frozenset({"input", "echo", "curve"})
APP_RUN_RE = re.compile(r"bench-app-run pid=(\d+) session=([A-Za-z0-9_.-]+)")
BOKEH_STARTED_RE = re.compile(r"Starting Bokeh server with process id: (\d+)")


@dataclass(frozen=True)
class Case:
    key: str
    kind: str  # "bokeh" or "runbokeh"
    procs: int
    redis: bool  # runbokeh on the Redis channel layer (bench.cluster_settings)

    @property
    def label(self) -> str:
        return f"{LABELS[self.kind]} {self.procs}p" + (" +Redis" if self.redis and self.procs == 1 else "")


CASES = {
    c.key: c
    for c in (
        Case("bokeh-1", "bokeh", 1, False),
        Case("bokeh-2", "bokeh", 2, False),
        Case("runbokeh-1", "runbokeh", 1, False),
        # One process on Redis: what the cluster bookkeeping costs before any second process.
        Case("runbokeh-1r", "runbokeh", 1, True),
        Case("runbokeh-2", "runbokeh", 2, True),
    )
}


@dataclass
class Params:
    warmup: int = 32  # opens before measuring, so every process has served some
    opens: int = 240  # measured opens ...
    concurrency: int = 16  # ... by this many clients at once
    timeout: float = 60.0

    @classmethod
    def quick(cls) -> Params:
        return cls(warmup=16, opens=96, concurrency=16, timeout=30.0)


METRICS: list[tuple[str, str, str]] = [
    ("opens_per_s", "sessions opened/s, {c} clients through nginx", "1/s"),
    ("open_p50_ms", "  open time under that load, p50", "ms"),
    ("open_p90_ms", "  p90", "ms"),
    ("server_cpu_ms", "  server CPU per open (all processes)", "ms"),
    ("busiest_share_pct", "  busiest process's share of server CPU", "%"),
    ("nginx_cpu_ms", "  nginx CPU per open", "ms"),
    ("redis_cpu_ms", "  redis-server CPU per open", "ms"),
    ("redis_calls", "  Redis commands per open", ""),
    ("client_cpu_ms", "  bench client CPU per open", "ms"),
    ("total_cpu_ms", "  all of the above per open", "ms"),
    ("ceiling_per_s", "  ceiling: 2 cores / all CPU per open", "1/s"),
    ("others_cpu_pct", "  other load on the machine (of 2 cores)", "%"),
    ("ws_elsewhere_pct", "WebSockets on another process than the page", "%"),
    ("relayed_pct", "  relayed to the owner (runbokeh log)", "%"),
    ("app_runs_per_open", "app code runs per session opened", ""),
    ("startup_s", "start until ready", "s"),
]


class Interrupted(BaseException):  # not caught by the per-case "except Exception"
    pass


def _on_sigterm(signum, frame):
    raise Interrupted(f"signal {signum}")


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])
    tck = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tck, total / tck


def redis_calls(redis: RedisProcess) -> dict[str, int]:
    """Commands redis-server has run so far, by command (INFO commandstats; the INFO call itself
    counts too, once per reading, which is noise next to hundreds of opens)."""
    return {key.removeprefix("cmdstat_"): int(v["calls"]) for key, v in redis.client.info("commandstats").items()}


def has_models(doc: dict, names: frozenset[str]) -> frozenset[str]:
    """The names in ``names`` that no model of the serialized document carries (one walk)."""
    missing = set(names)
    stack = [doc]
    while stack and missing:
        node = stack.pop()
        if isinstance(node, dict):
            attrs = node.get("attributes")
            if isinstance(attrs, dict):
                missing.discard(attrs.get("name"))
            stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return frozenset(missing)


async def open_through(port: int, app: str, timeout: float) -> Session:  # noqa: ASYNC109
    """One session opened through nginx, as a browser would; its document must hold the app's models."""
    session = await Session.open(HOST, port, app, timeout=timeout)
    missing = has_models(session.doc, APP_MODELS)
    if missing:
        await session.close()
        raise RuntimeError(f"the pulled document lacks the app's model(s) {sorted(missing)}: the session is incomplete")
    return session


async def open_many(port: int, app: str, count: int, concurrency: int, timeout: float) -> tuple[list[str], list[float], float]:  # noqa: ASYNC109
    """``count`` opens by ``concurrency`` clients, each opening its next session once its last is
    open (the close runs in the background, as a tab going away). Returns the session ids, the
    open times and the wall time until the last open completed. Any failure fails the call."""
    remaining = count
    ids: list[str] = []
    totals: list[float] = []
    closes: list[asyncio.Task] = []
    last = t0 = time.perf_counter()

    async def client() -> None:
        nonlocal remaining, last
        while remaining > 0:
            remaining -= 1
            session = await open_through(port, app, timeout)
            last = time.perf_counter()
            ids.append(get_session_id(session.token))
            totals.append(session.timings.total)
            closes.append(asyncio.create_task(session.close()))

    try:
        await asyncio.wait_for(asyncio.gather(*(client() for _ in range(concurrency))), timeout * 4)
    finally:
        await asyncio.wait_for(asyncio.gather(*closes, return_exceptions=True), 30)
    return ids, totals, last - t0


@dataclass
class Bench:
    p: Params
    logdir: Path
    redis: RedisProcess | None
    raw: dict[str, dict[str, list[float]]]
    errors: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    commands: dict[str, str] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    #: per case, per run: Redis commands per open, by command (from INFO commandstats)
    redis_commands: dict[str, list[dict[str, float]]] = field(default_factory=lambda: defaultdict(list))

    def start_server(self, case: Case, log: Path, nginx: Nginx) -> Server:
        extra = ["--allow-websocket-origin", nginx.origin]
        if case.kind == "runbokeh" and case.redis:
            self.redis.flush()
            return start_runbokeh(APP, log, self.redis.url, case.procs, extra, timeout=self.p.timeout * 1.5)
        if case.procs > 1:
            extra += ["--num-procs", str(case.procs)]
        server = Server(case.kind, APP, log, extra_args=extra, env=RUNBOKEH_ENV if case.kind == "runbokeh" else {})
        server.start(self.p.timeout * 1.5)
        if case.kind == "bokeh":  # bokeh serve forks after binding: wait until every child runs
            deadline = time.monotonic() + self.p.timeout
            while len(set(BOKEH_STARTED_RE.findall(read_log(server)))) < case.procs:
                if time.monotonic() > deadline or not server.alive():
                    server.stop()
                    raise RuntimeError(f"bokeh serve did not start {case.procs} process(es):\n{server.log_tail()}")
                time.sleep(0.1)
        server.remember_descendants()
        return server

    def run_case(self, run: int, case: Case) -> None:
        p, t0 = self.p, time.monotonic()
        nginx = Nginx(self.logdir / f"run{run}-{case.key}-nginx")
        server = None
        figures = self.raw[case.key]
        try:
            server = self.start_server(case, self.logdir / f"run{run}-{case.key}.log", nginx)
            figures["startup_s"].append(time.monotonic() - t0)
            nginx.start(server.port)
            self.commands[case.key] = " ".join(server.command)
            asyncio.run(open_many(nginx.port, server.app, p.warmup, p.concurrency, p.timeout))
            server.remember_descendants()  # bokeh's children, runbokeh's workers
            workers = process_tree(server.proc.pid)
            cpu0 = {pid: cpu_seconds(pid) for pid in workers}
            ncpu0, rcpu0 = nginx.cpu(), self.redis.cpu() if self.redis else 0.0
            calls0 = redis_calls(self.redis) if case.redis else {}
            busy0, all0 = machine_busy_seconds()
            ccpu0 = time.process_time()
            ids, totals, wall = asyncio.run(open_many(nginx.port, server.app, p.opens, p.concurrency, p.timeout))
            ccpu = time.process_time() - ccpu0
            busy, total = (a - b for a, b in zip(machine_busy_seconds(), (busy0, all0), strict=True))
            per_pid = {pid: cpu_seconds(pid) - cpu0[pid] for pid in workers}
            ncpu = nginx.cpu() - ncpu0
            rcpu = (self.redis.cpu() - rcpu0) if self.redis and case.redis else 0.0
            calls = redis_calls(self.redis) if case.redis else {}
        except Exception as exc:  # noqa: BLE001 - recorded, and the bench moves on
            msg = f"{type(exc).__name__}: {exc}"
            if server is not None and not server.alive():
                msg += f"\nserver exited with {server.proc.returncode}; log tail:\n{server.log_tail()}"
            self.errors.append({"run": run, "case": case.key, "error": msg})
            print(f"  run {run} {case.label:<18} FAILED: {msg.splitlines()[0]}", flush=True)
            return
        finally:
            nginx.stop()
            if server is not None:
                server.stop()
        scpu = sum(per_pid.values())
        ours = scpu + ncpu + rcpu + ccpu
        n = len(ids)
        figures["opens_per_s"].append(n / wall)
        figures["open_p50_ms"].append(1000 * statistics.median(totals))
        figures["open_p90_ms"].append(1000 * statistics.quantiles(totals, n=10)[-1])
        figures["server_cpu_ms"].append(1000 * scpu / n)
        figures["busiest_share_pct"].append(100 * max(per_pid.values()) / scpu if scpu else float("nan"))
        figures["nginx_cpu_ms"].append(1000 * ncpu / n)
        if case.redis:
            figures["redis_cpu_ms"].append(1000 * rcpu / n)
            per_open = {cmd: (c - calls0.get(cmd, 0)) / n for cmd, c in calls.items() if c > calls0.get(cmd, 0)}
            figures["redis_calls"].append(sum(per_open.values()))
            self.redis_commands[case.key].append(per_open)
        figures["client_cpu_ms"].append(1000 * ccpu / n)
        figures["total_cpu_ms"].append(1000 * ours / n)
        figures["ceiling_per_s"].append(2 * n / ours)
        # Busy time of the whole machine over the same window, less ours: as % of 2 cores.
        figures["others_cpu_pct"].append(max(0.0, 100 * (busy - ours) / total * (os.cpu_count() or 1) / 2))
        self.check_logs(run, case, server, ids, figures)
        print(
            f"  run {run} {case.label:<18} {time.monotonic() - t0:5.1f} s  {n / wall:5.1f} opens/s, "
            f"CPU per open: server {1000 * scpu / n:.1f} ms, nginx {1000 * ncpu / n:.1f}, "
            f"redis {1000 * rcpu / n:.1f}, client {1000 * ccpu / n:.1f}",
            flush=True,
        )

    def check_logs(self, run: int, case: Case, server: Server, ids: list[str], figures) -> None:
        """Per measured session: which processes ran its app code, and was its WebSocket relayed."""
        text = read_log(server)
        runs: dict[str, list[str]] = defaultdict(list)
        for pid, sid in APP_RUN_RE.findall(text):
            runs[sid].append(pid)
        relayed = set(RELAYED_RE.findall(text))
        measured = [runs.get(sid, []) for sid in ids]
        figures["app_runs_per_open"].append(sum(len(r) for r in measured) / len(ids))
        if case.kind == "bokeh":
            # The page built the session in one process; a WebSocket on the other built it again there.
            elsewhere = sum(1 for r in measured if len(set(r)) > 1)
        else:
            elsewhere = sum(1 for sid in ids if sid in relayed)
            figures["relayed_pct"].append(100 * elsewhere / len(ids))
            twice = [sid for sid, r in zip(ids, measured, strict=True) if len(r) != 1]
            if twice:
                self.errors.append(
                    {"run": run, "case": case.key, "error": f"{len(twice)} session(s) whose app code ran other than once"}
                )
        figures["ws_elsewhere_pct"].append(100 * elsewhere / len(ids))
        if not all(measured):
            self.errors.append(
                {"run": run, "case": case.key, "error": "sessions without an app-code run in the server log"}
            )
        if case.procs == 1 and elsewhere:
            self.errors.append({"run": run, "case": case.key, "error": f"{elsewhere} WebSockets elsewhere with one process"})
        for line in text.splitlines():
            if re.search(r" (WARNING|ERROR|CRITICAL) |Traceback", line):
                self.warnings.append({"run": run, "case": case.key, "line": line.strip()})

    def pair_ratios(self, run: int) -> None:
        """Ratios within one run (both sides measured minutes apart, not across runs)."""

        def latest(key: str, metric: str) -> float | None:
            values = self.raw.get(key, {}).get(metric) or []
            return values[-1] if len(values) >= run else None

        for name, num, den in (
            ("bokeh: 2 procs / 1", "bokeh-2", "bokeh-1"),
            ("runbokeh: 2 procs / 1", "runbokeh-2", "runbokeh-1"),
            ("runbokeh: 2 procs / 1 on Redis", "runbokeh-2", "runbokeh-1r"),
            ("1 process: runbokeh / bokeh", "runbokeh-1", "bokeh-1"),
            ("2 processes: runbokeh / bokeh", "runbokeh-2", "bokeh-2"),
        ):
            a, b = latest(num, "opens_per_s"), latest(den, "opens_per_s")
            if a is not None and b is not None:
                self.ratios[name].append(a / b)
        # The best 2 processes could do over 1 on two otherwise idle cores: one process is
        # bound to one core (1 / its server CPU per open); two processes share both cores with
        # nginx, Redis and the client (2 / all CPU per open).
        for kind, one in (("bokeh", "bokeh-1"), ("runbokeh", "runbokeh-1")):
            server_one, all_two = latest(one, "server_cpu_ms"), latest(f"{kind}-2", "total_cpu_ms")
            if server_one is not None and all_two is not None:
                self.ratios[f"{kind}: CPU ceiling of 2 procs / 1"].append(2 * server_one / all_two)


def cell(s: dict | None, runs: int) -> str:
    if s is None:
        return "-"
    spread = f" [{fmt(s['min'])}-{fmt(s['max'])}]" if s["n"] > 1 else ""
    return fmt(s["median"]) + ("*" if s["n"] < runs else "") + spread


def print_table(bench: Bench, cases: list[Case], runs: int) -> tuple[list[dict], dict]:
    summary = summarise({c.key: bench.raw[c.key] for c in cases})
    name_w = max(len(label.format(c=bench.p.concurrency)) for _, label, _ in METRICS) + 2
    col = 20
    print()
    header = f"{'median over runs [min-max]':<{name_w}} {'unit':>4}" + "".join(f" {c.label:>{col}}" for c in cases)
    print(header)
    print("-" * len(header))
    table = []
    for key, label, unit in METRICS:
        label = label.format(c=bench.p.concurrency)
        cells = [summary.get(c.key, {}).get(key) for c in cases]
        print(f"{label:<{name_w}} {unit:>4}" + "".join(f" {cell(s, runs):>{col}}" for s in cells))
        table.append({"key": key, "label": label.strip(), "unit": unit,
                      **{c.key: (s or {}).get("median") for c, s in zip(cases, cells, strict=True)}})
    ratio_summary = summarise({"r": bench.ratios}).get("r", {})
    if ratio_summary:
        print("\nopens/s ratios, per run (median [min-max]):")
        for name, s in ratio_summary.items():
            print(f"  {name:<34} {cell(s, runs)}")
    for key, per_run in bench.redis_commands.items():
        commands = summarise({"c": {cmd: [r.get(cmd, 0.0) for r in per_run] for r in per_run for cmd in r}})["c"]
        top = sorted(commands.items(), key=lambda kv: -kv[1]["median"])
        print(f"\nRedis commands per open, {key} (median over runs): "
              + ", ".join(f"{cmd} {s_['median']:.2f}" for cmd, s_ in top if s_["median"] >= 0.05))
    print(
        f"\nper run and case: {bench.p.warmup} warm-up opens, then {bench.p.opens} opens by "
        f"{bench.p.concurrency} clients, all through nginx."
    )
    if bench.errors:
        print(f"\n{len(bench.errors)} error(s):")
        for e in bench.errors:
            first, _, rest = e["error"].partition("\n")
            print(f"  run {e['run']} {e['case']}: {first}")
            if rest:
                print("    " + rest[:2000].replace("\n", "\n    "))
    if bench.warnings:
        print(f"\n{len(bench.warnings)} WARNING/ERROR line(s) in the server logs (first 10):")
        for w in bench.warnings[:10]:
            print(f"  run {w['run']} {w['case']}: {w['line'][:200]}")
    return table, ratio_summary


# ---------------------------------------------------------------------------------------------
# --profile: one case under py-spy, every process of the server; nginx and Redis by CPU only

#: Where a sample's innermost frame of ours, or of a library, puts it; first match wins.
PROFILE_BUCKETS: list[tuple[str, str]] = [
    ("bokehserve_django/cluster/relay", "our relay (cluster/relay.py)"),
    ("bokehserve_django/cluster/", "our cluster bookkeeping (cluster/*)"),
    ("channels_redis/", "channels_redis"),
    ("redis/", "redis-py"),
    ("bench/apps/", "app code"),
    ("bokeh/", "bokeh (documents, serialization, sessions)"),
    ("bokehserve_django/", "bokehserve_django, outside cluster/"),
    ("tornado/", "tornado"),
    ("django/", "Django"),
    ("channels/", "Channels"),
    ("daphne/", "daphne"),
    ("autobahn/", "autobahn"),
    ("twisted/", "Twisted"),
    ("asyncio/", "asyncio"),
    ("json/", "json"),
]


def _any(test: Callable[[str], bool]) -> Callable[[list[str]], bool]:
    return lambda frames: any(test(f) for f in frames)


def _in_cluster(frame: str) -> bool:
    # LifecycleMiddleware wraps the whole ASGI app: under it is everything, not cluster work.
    return "bokehserve_django/cluster/" in frame and "cluster/lifecycle.py" not in frame


def _relay_own(frames: list[str]) -> bool:
    """A sample in the relay but not in the Bokeh message handling the owner's relay hands a
    message to (ClientConnection.feed: the work a local WebSocket's message costs too)."""
    relay = [i for i, f in enumerate(frames) if "bokehserve_django/cluster/relay" in f]
    return bool(relay) and not any("ClientConnection.feed" in f for f in frames[relay[0]:])


#: A sample counts for a label when the test holds for its stack (outermost frame first):
#: what a piece costs with its callees. (py-spy --gil writes paths relative to sys.path.)
PROFILE_INCLUSIVE: list[tuple[str, Callable[[list[str]], bool]]] = [
    ("app code (procs_widget.py, with the bokeh models it builds)",
     _any(lambda f: "widget.py:" in f and "bokeh/" not in f)),
    ("bokeh serialization (PULL-DOC-REPLY, page)", _any(lambda f: "bokeh/core/serialization" in f)),
    ("our cluster/ but its ASGI middleware (relay, placement, membership)", _any(_in_cluster)),
    ("  the relay (cluster/relay.py), with the messages it hands on", _any(lambda f: "cluster/relay" in f)),
    ("  the relay's own work, Redis sends included", _relay_own),
    ("channels_redis + redis-py, from anywhere", _any(lambda f: "redis/" in f)),
    ("gc.collect() after destroyed sessions (sessions.py)", _any(lambda f: "collect_garbage_soon" in f)),
]


def bucket_of(frames: list[str]) -> str:
    """The innermost frame that belongs to a known package decides (a sample in json called from
    the relay is json's; the relay's own lines are the relay's)."""
    for frame in reversed(frames):
        path = frame.partition(" (")[2]
        for needle, name in PROFILE_BUCKETS:
            if needle in path:
                return name
    return "other"


def profile_case(case: Case, p: Params, logdir: Path, redis: RedisProcess | None, rate: int, top: int) -> None:
    bench = Bench(p, logdir, redis, {case.key: defaultdict(list)})
    nginx = Nginx(logdir / f"profile-{case.key}-nginx")
    server = bench.start_server(case, logdir / f"profile-{case.key}.log", nginx)
    spies: dict[int, tuple[subprocess.Popen, Path]] = {}
    try:
        nginx.start(server.port)
        asyncio.run(open_many(nginx.port, server.app, p.warmup, p.concurrency, p.timeout))
        server.remember_descendants()
        pids = process_tree(server.proc.pid)
        for pid in pids:  # one py-spy per process, so that each process's samples stay apart
            raw = logdir / f"profile-{case.key}-{pid}.raw"
            spies[pid] = (
                subprocess.Popen(
                    [str(VENV_BIN / "py-spy"), "record", "--gil", "-r", str(rate), "-f", "raw", "-o", str(raw),
                     "--pid", str(pid)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                ),
                raw,
            )
        time.sleep(1.5)  # py-spy attaches
        for pid, (spy, _) in spies.items():
            if spy.poll() is not None:
                raise SystemExit(f"py-spy on {pid} exited at once: {spy.stderr.read().decode(errors='replace')}")
        cpu0 = {pid: cpu_seconds(pid) for pid in pids}
        n0, r0 = nginx.cpu(), redis.cpu() if redis else 0.0
        ids, _, wall = asyncio.run(open_many(nginx.port, server.app, p.opens, p.concurrency, p.timeout))
        n = len(ids)
        print(f"{case.label}: {n} opens in {wall:.1f} s under py-spy (slower than unprofiled)")
        for pid in pids:
            print(f"  process {pid}: {1000 * (cpu_seconds(pid) - cpu0[pid]) / n:.1f} ms CPU per open")
        print(f"  nginx {1000 * (nginx.cpu() - n0) / n:.2f} ms, redis-server "
              f"{1000 * ((redis.cpu() if redis else 0.0) - r0) / n:.2f} ms CPU per open")
    finally:
        for spy, _ in spies.values():
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for spy, _ in spies.values():
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(spy.pid, signal.SIGKILL)
        nginx.stop()
        server.stop()
    print_profile({pid: raw for pid, (_, raw) in spies.items()}, top)


def print_profile(raws: dict[int, Path], top: int) -> None:
    """Samples per process (CPU only: py-spy leaves idle threads out) by bucket, and the
    functions with the most self time over all processes."""
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for pid, raw in raws.items():
        buckets: collections.Counter[str] = collections.Counter()
        inclusive: collections.Counter[str] = collections.Counter()
        lines = raw.read_text().splitlines() if raw.exists() else []
        for line in lines:
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = stack.split(";")
            samples = int(count)
            buckets[bucket_of(frames)] += samples
            for label, matches in PROFILE_INCLUSIVE:
                if matches(frames):
                    inclusive[label] += samples
            name, _, where = frames[-1].partition(" (")
            own[f"{name} {where.rstrip(')').rsplit('/', 1)[-1]}"] += samples
        n = sum(buckets.values())
        total += n
        print(f"\nprocess {pid}: {n} samples ({raw}); by the innermost known package:")
        for name, k in buckets.most_common():
            print(f"  {100 * k / n:5.1f}%  {name}")
        if n:
            print("  inclusive:")
            for label, _ in PROFILE_INCLUSIVE:
                print(f"  {100 * inclusive[label] / n:5.1f}%  {label}")
    if not total:
        print("no samples (did py-spy attach? it needs ptrace permission)")
        return
    print("\nself time, all processes:")
    for k, n in own.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {k}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, help="runs (default 3, or 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smaller counts and 1 run")
    parser.add_argument("--cases", default=",".join(CASES), help="cases to measure (default %(default)s)")
    parser.add_argument("--concurrency", type=int, help="clients at once (default 16)")
    parser.add_argument("--profile", choices=sorted(CASES), help="run this case once under py-spy instead")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second with --profile")
    parser.add_argument("--top", type=int, default=25, help="functions listed with --profile")
    parser.add_argument("--max-minutes", type=float, default=20.0, help="start no new run after this long")
    parser.add_argument("--output", type=Path, help="JSON results (default bench/results/procs-<stamp>.json)")
    args = parser.parse_args(argv)

    p = Params.quick() if args.quick else Params()
    if args.concurrency:
        p.concurrency = args.concurrency
    repeat = args.repeat or (1 if args.quick else 3)
    unknown = [k for k in args.cases.split(",") if k not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    cases = [CASES[k] for k in args.cases.split(",")]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logdir = RESULTS / "logs" / f"procs-{stamp}"
    env_without_overrides()
    signal.signal(signal.SIGTERM, _on_sigterm)
    needs_redis = any(c.redis for c in cases) or (args.profile and CASES[args.profile].redis)
    redis = RedisProcess(logdir / "redis") if needs_redis else None
    print(f"logs: {logdir}")
    if redis:
        redis.start()
    try:
        if args.profile:
            profile_case(CASES[args.profile], p, logdir, redis, args.rate, args.top)
            return 0
        bench = Bench(p, logdir, redis, {c.key: defaultdict(list) for c in cases})
        started, runs_done = time.monotonic(), 0
        print(f"procs bench: {repeat} run(s); cases {', '.join(c.key for c in cases)}")
        try:
            for run in range(1, repeat + 1):
                if time.monotonic() - started > args.max_minutes * 60:
                    print(f"time limit of {args.max_minutes:g} min reached; stopping after {run - 1} run(s)")
                    break
                for case in cases if run % 2 else cases[::-1]:
                    bench.run_case(run, case)
                bench.pair_ratios(run)
                runs_done = run
        except (KeyboardInterrupt, Interrupted) as exc:
            print(f"interrupted ({exc!r}); reporting what was measured", file=sys.stderr)
    finally:
        if redis:
            redis.stop()
    table, ratio_summary = print_table(bench, cases, runs_done)
    output = args.output or RESULTS / f"procs-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "stamp": stamp,
        "versions": {**versions(), **cluster_versions(), "nginx": Nginx(logdir / "version").version,
                     "redis-server": redis.version if redis else None},
        "repeat": repeat,
        "runs_done": runs_done,
        "params": p.__dict__,
        "commands": bench.commands,
        "raw": {k: dict(v) for k, v in bench.raw.items()},
        "summary": summarise({c.key: bench.raw[c.key] for c in cases}),
        "ratios": dict(bench.ratios),
        "ratio_summary": ratio_summary,
        "redis_commands_per_open": dict(bench.redis_commands),
        "table": table,
        "errors": bench.errors,
        "log_warnings": bench.warnings,
        "logs": str(logdir),
    }
    output.write_text(json.dumps(doc, indent=2, default=str))
    print(f"\nresults: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

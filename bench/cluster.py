#!/usr/bin/env python
"""Cluster bench: runbokeh with 1, 2 and 4 processes on one Redis, and the relay's added latency.

    .venv/bin/python bench/cluster.py              # 3 runs (about 4-5 minutes)
    .venv/bin/python bench/cluster.py --quick      # smaller counts, 1 run (under a minute)
    .venv/bin/python bench/cluster.py --repeat 5 --procs 1,2

Starts its own redis-server (no persistence) on a free port. In each run, for each N it starts
``manage.py runbokeh bench/apps/widget.py --num-procs N`` (one listening socket shared by N
processes, so a page and its WebSocket often land on different processes and the WebSocket is
relayed to the session's owner) with DJANGO_SETTINGS_MODULE=bench.cluster_settings, and measures
session opens (one at a time, and many clients at once) and widget round trips over many
sessions. Then it starts two single-process servers A and B on the same Redis and compares a
WebSocket on the session's owner (page and WebSocket on A) with a relayed one (page on A,
WebSocket on B). Prints medians over the runs; JSON to ``bench/results/cluster-<stamp>.json``,
server logs to ``bench/results/logs/cluster-<stamp>/``. Asserts nothing. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cluster_scenarios import (  # noqa: E402
    REDIS_SERVER,
    SETTINGS,
    ClusterParams,
    RedisProcess,
    concurrent_opens,
    env_without_overrides,
    parse_logs,
    relay_ab,
    roundtrips_over_sessions,
    sequential_opens,
    split_by_relay,
    start_runbokeh,
    warm_up,
)
from run import fmt, summarise  # noqa: E402
from servers import Server, versions  # noqa: E402

APP = HERE / "apps" / "widget.py"
RESULTS = HERE / "results"

CLUSTER_METRICS: list[tuple[str, str, str]] = [
    ("tput_per_s", "sessions opened/s, {c} clients at once", "1/s"),
    ("tput_open_p50_ms", "  open time under that load, p50", "ms"),
    ("tput_open_p90_ms", "  p90", "ms"),
    ("tput_cpu_ms", "  server CPU per open (all processes)", "ms"),
    ("tput_redis_cpu_ms", "  redis-server CPU per open", "ms"),
    ("tput_client_cpu_ms", "  bench client CPU per open (same machine)", "ms"),
    ("open_ms", "session open, one at a time: GET + WS + ACK + PULL-DOC", "ms"),
    ("open_p90_ms", "  p90", "ms"),
    ("open_http_ms", "  page GET (session created)", "ms"),
    ("open_ws_ack_ms", "  WS handshake until ACK", "ms"),
    ("open_pull_ms", "  PULL-DOC-REQ until reply", "ms"),
    ("rt_p50_ms", "widget round trip, p50 over all sessions", "ms"),
    ("rt_p90_ms", "  p90", "ms"),
    ("rt_local_p50_ms", "  p50, sessions on their owner", "ms"),
    ("rt_relayed_p50_ms", "  p50, relayed sessions", "ms"),
    ("relayed_pct", "WebSockets relayed to another process", "%"),
    ("startup_s", "start until every process is ready", "s"),
]

RELAY_METRICS: list[tuple[str, str, str]] = [
    ("rt_p50_ms", "widget round trip, p50", "ms"),
    ("rt_p90_ms", "widget round trip, p90", "ms"),
    ("pull_ms", "PULL-DOC-REQ until reply", "ms"),
    ("ws_ack_ms", "WS handshake until ACK", "ms"),
]


class Interrupted(BaseException):  # not caught by the per-step "except Exception"
    pass


def _on_sigterm(signum, frame):  # turn SIGTERM into an exception so that servers get stopped
    raise Interrupted(f"signal {signum}")


def run_bounded(coro, limit: float):
    return asyncio.run(asyncio.wait_for(coro, limit))


def describe(exc: BaseException, *servers: Server) -> str:
    msg = f"{type(exc).__name__}: {exc}"
    for server in servers:
        if server is not None and not server.alive():
            msg += f"\nserver exited with {server.proc.returncode}; log tail:\n{server.log_tail()}"
    return msg


def cluster_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("channels-redis", "redis"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def cell(s: dict | None, runs: int) -> str:
    if s is None:
        return "n/a"
    spread = f" [{fmt(s['min'])}-{fmt(s['max'])}]" if s["n"] > 1 else ""
    return fmt(s["median"]) + ("*" if s["n"] < runs else "") + spread


@dataclass
class Bench:
    """What one invocation measures and collects."""

    p: ClusterParams
    logdir: Path
    redis: RedisProcess
    raw: dict[str, dict[str, list[float]]]
    relay_raw: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    commands: dict[str, str] = field(default_factory=dict)
    live: list[Server] = field(default_factory=list)  # started and not stopped yet

    @property
    def limit(self) -> float:  # any one step
        return self.p.timeout * 4

    def error(self, run: int, case: str, message: str) -> None:
        self.errors.append({"run": run, "case": case, "error": message})

    def start(self, log_name: str, procs: int, extra: list[str] | None = None) -> Server:
        server = start_runbokeh(APP, self.logdir / log_name, self.redis.url, procs, extra)
        self.live.append(server)
        return server

    def stop(self, server: Server) -> None:
        server.stop()
        self.live.remove(server)

    def cluster_case(self, run: int, n: int) -> None:
        """runbokeh --num-procs n: warm-up, opens one at a time, opens at once, round trips."""
        p, t0 = self.p, time.monotonic()
        self.redis.flush()
        try:
            server = self.start(f"run{run}-procs{n}.log", n)
        except RuntimeError as exc:
            self.error(run, f"{n} procs: start", str(exc))
            print(f"  run {run} {n} proc(s): FAILED TO START", flush=True)
            return
        self.commands[str(n)] = " ".join(server.command)
        figures = self.raw[str(n)]
        figures["startup_s"].append(server.startup_seconds)
        steps = [
            ("warm-up", warm_up, (server, p)),
            ("opens", sequential_opens, (server, p)),
            ("throughput", concurrent_opens, (server, self.redis, p)),
            ("round trips", roundtrips_over_sessions, (server, p)),
        ]
        done: list[str] = []
        rt_by_session: dict[str, list[float]] = {}
        try:
            for name, scenario, scenario_args in steps:
                try:
                    result = run_bounded(scenario(*scenario_args), self.limit)
                except Exception as exc:  # noqa: BLE001 - recorded, and the bench moves on
                    self.error(run, f"{n} procs: {name}", describe(exc, server))
                    done.append(f"{name} FAILED")
                    if not server.alive():
                        break
                    continue
                for key, value in (result or {}).items():
                    if key == "_rt_by_session":
                        rt_by_session = value
                    else:
                        figures[key].append(value)
                done.append(name)
        finally:
            self.stop(server)
        counts = parse_logs(server)
        opened = len(counts.relayed) + len(counts.local)
        if opened:
            figures["relayed_pct"].append(100.0 * len(counts.relayed) / opened)
        for key, value in split_by_relay(rt_by_session, counts).items():
            figures[key].append(value)
        client_opens = p.warmup_opens + p.open_count + p.tput_count + p.rt_sessions
        if done == [name for name, _, _ in steps] and opened != client_opens:
            self.error(
                run,
                f"{n} procs",
                f"the server log shows {opened} WebSocket opens (local + relayed); the client made {client_opens}",
            )
        if n == 1 and counts.relayed:
            self.error(run, "1 proc", f"{len(counts.relayed)} relayed WebSockets with one process")
        self.warnings += [{"run": run, "case": f"{n} procs", "line": line} for line in counts.problems]
        print(
            f"  run {run} {n} proc(s) {time.monotonic() - t0:5.1f} s  {', '.join(done)}; "
            f"{len(counts.relayed)} of {opened} WebSockets relayed"
            + (f"; {len(counts.problems)} warning/error line(s) in the log" if counts.problems else ""),
            flush=True,
        )

    def relay_case(self, run: int) -> None:
        """Two single-process servers A and B: WebSocket on the owner vs relayed through the other."""
        t0 = time.monotonic()
        self.redis.flush()
        pair: list[Server] = []
        result = None
        try:
            for label in ("A", "B"):
                pair.append(
                    self.start(f"run{run}-relay-{label}.log", 1, ["--allow-websocket-origin=127.0.0.1:*"])
                )
            self.commands["relay"] = " ".join(pair[0].command)
            for server in pair:
                run_bounded(warm_up(server, self.p), self.limit)
            result = run_bounded(relay_ab(pair[0], pair[1], self.p), self.limit * 2)
        except Exception as exc:  # noqa: BLE001 - recorded, and the bench moves on
            self.error(run, "relay A/B", describe(exc, *pair))
        finally:
            for server in pair:
                self.stop(server)
        counts = parse_logs(*pair)
        self.warnings += [{"run": run, "case": "relay A/B", "line": line} for line in counts.problems]
        if result is None:
            print(f"  run {run} relay A/B  {time.monotonic() - t0:5.1f} s  FAILED", flush=True)
            return
        ids = result.pop("_ids")
        not_relayed = [s for s in ids["relayed"] if s not in counts.relayed]
        not_local = [s for s in ids["local"] if s not in counts.local]
        if not_relayed or not_local:
            self.error(
                run,
                "relay A/B",
                f"per the server logs, {len(not_relayed)} 'relayed' session(s) were not relayed and "
                f"{len(not_local)} 'local' session(s) were not opened locally",
            )
        for key, value in result.items():
            self.relay_raw[key].append(value)
        print(
            f"  run {run} relay A/B  {time.monotonic() - t0:5.1f} s  {len(ids['local'])} local, "
            f"{len(ids['relayed'])} relayed sessions ({len(ids['relayed']) - len(not_relayed)} confirmed "
            "relayed in the log)",
            flush=True,
        )


def print_tables(bench: Bench, procs: list[int], runs: int) -> tuple[list[dict], list[dict]]:
    p = bench.p
    summary = summarise({str(n): bench.raw[str(n)] for n in procs})
    relay_summary = summarise({"relay": bench.relay_raw}).get("relay", {})
    print()
    name_w = max(len(label.format(c=p.tput_concurrency)) for _, label, _ in CLUSTER_METRICS) + 2
    header = f"{'figure (median over runs, [min-max])':<{name_w}} {'unit':>5}" + "".join(
        f" {f'{n} proc' + ('s' if n > 1 else ''):>22}" for n in procs
    )
    print(header)
    print("-" * len(header))
    table = []
    for key, label, unit in CLUSTER_METRICS:
        label = label.format(c=p.tput_concurrency)
        cells = [summary.get(str(n), {}).get(key) for n in procs]
        print(f"{label:<{name_w}} {unit:>5}" + "".join(f" {cell(c, runs):>22}" for c in cells))
        medians = {str(n): (c or {}).get("median") for n, c in zip(procs, cells, strict=True)}
        table.append({"key": key, "label": label.strip(), "unit": unit, **medians})
    print()
    print(
        f"per run and process count: {p.warmup_opens} warm-up opens; {p.open_count} opens one at a time; "
        f"{p.tput_count} opens by {p.tput_concurrency} clients at once; {p.rt_sessions} sessions x "
        f"{p.rt_per_session} round trips. Relayed % counts the WebSockets of the whole run (server log)."
    )
    relay_table = []
    if relay_summary:
        print()
        w = 28
        print(
            f"{'relay A/B (one process each)':<{w}} {'unit':>5} {'local (A->A)':>20} {'relayed (A->B)':>20} {'added':>20}"
        )
        print("-" * (w + 6 + 63))
        modes = ("local", "relayed", "added")
        for key, label, unit in RELAY_METRICS:
            cells = [relay_summary.get(f"ab_{mode}_{key}") for mode in modes]
            print(f"{label:<{w}} {unit:>5}" + "".join(f" {cell(c, runs):>20}" for c in cells))
            medians = {mode: (c or {}).get("median") for mode, c in zip(modes, cells, strict=True)}
            relay_table.append({"key": key, "label": label, "unit": unit, **medians})
        print(
            f"{p.relay_sessions} sessions per mode x {p.relay_rt_per_session} round trips; page always from the "
            "session's owner; owners alternate between A and B. 'added' is the median over runs of (relayed - local)."
        )
    if bench.errors:
        print(f"\n{len(bench.errors)} error(s):")
        for e in bench.errors:
            first, _, rest = e["error"].partition("\n")
            print(f"  run {e['run']} {e['case']}: {first}")
            if rest:
                print("    " + rest.replace("\n", "\n    "))
    if bench.warnings:
        print(f"\n{len(bench.warnings)} WARNING/ERROR line(s) in the server logs (first 10):")
        for w_ in bench.warnings[:10]:
            print(f"  run {w_['run']} {w_['case']}: {w_['line'][:200]}")
    return table, relay_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, help="runs (default 3, or 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smaller counts and 1 run")
    parser.add_argument("--procs", default="1,2,4", help="process counts to measure (default %(default)s)")
    parser.add_argument("--no-relay", action="store_true", help="skip the A/B relay measurement")
    parser.add_argument("--max-minutes", type=float, default=20.0, help="start no new run after this long")
    parser.add_argument(
        "--output", type=Path, help="JSON results file (default bench/results/cluster-<stamp>.json)"
    )
    args = parser.parse_args(argv)

    p = ClusterParams.quick() if args.quick else ClusterParams()
    repeat = args.repeat or (1 if args.quick else 3)
    procs = [int(x) for x in args.procs.split(",") if x.strip()]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logdir = RESULTS / "logs" / f"cluster-{stamp}"
    output = args.output or RESULTS / f"cluster-{stamp}.json"
    env_without_overrides()
    signal.signal(signal.SIGTERM, _on_sigterm)
    bench = Bench(p, logdir, RedisProcess(logdir / "redis"), {str(n): defaultdict(list) for n in procs})
    started = time.monotonic()
    runs_done = 0

    print(f"cluster bench: {repeat} run(s); processes {procs}; relay A/B {'no' if args.no_relay else 'yes'}")
    print(f"logs: {logdir}")
    try:
        bench.redis.start()
        for rep in range(1, repeat + 1):
            if time.monotonic() - started > args.max_minutes * 60:
                print(f"time limit of {args.max_minutes:g} min reached; stopping after {rep - 1} run(s)")
                break
            for n in procs if rep % 2 else procs[::-1]:
                bench.cluster_case(rep, n)
            if not args.no_relay:
                bench.relay_case(rep)
            runs_done = rep
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"interrupted ({exc!r}); reporting what was measured", file=sys.stderr)
    except RuntimeError as exc:  # redis-server did not start
        bench.error(0, "redis-server", str(exc))
        print(f"error: {exc}", file=sys.stderr)
    finally:
        for server in list(bench.live):
            bench.stop(server)
        bench.redis.stop()

    table, relay_table = print_tables(bench, procs, runs_done)
    output.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "stamp": stamp,
        "versions": {**versions(), **cluster_versions(), "redis-server": bench.redis.version},
        "repeat": repeat,
        "runs_done": runs_done,
        "quick": args.quick,
        "params": p.__dict__,
        "settings": SETTINGS,
        "redis": REDIS_SERVER,
        "commands": bench.commands,
        "raw": {n: dict(v) for n, v in bench.raw.items()},
        "summary": summarise({str(n): bench.raw[str(n)] for n in procs}),
        "relay_raw": dict(bench.relay_raw),
        "relay_summary": summarise({"relay": bench.relay_raw}).get("relay", {}),
        "table": table,
        "relay_table": relay_table,
        "errors": bench.errors,
        "log_warnings": bench.warnings,
        "logs": str(logdir),
    }
    output.write_text(json.dumps(doc, indent=2, default=str))
    print(f"\nresults: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

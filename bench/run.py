#!/usr/bin/env python
"""Benchmark ``bokeh serve`` against ``manage.py runbokeh`` on the same apps, in one run.

    .venv/bin/python bench/run.py                 # both servers, 5 repetitions
    .venv/bin/python bench/run.py --quick         # smaller counts, 2 repetitions
    .venv/bin/python bench/run.py --only bokeh    # one server only
    .venv/bin/python bench/run.py --panel         # a Panel app: panel serve vs runbokeh

Prints medians over the repetitions side by side with the ratio ours/bokeh and writes everything
(per-repetition figures, errors, versions, commands) to ``bench/results/<stamp>.json``. Server logs
go to ``bench/results/logs/<stamp>/``. It prints figures; it asserts nothing. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scenarios import GROUPS, LONG_GROUPS, PANEL_GROUPS, Params  # noqa: E402
from servers import (  # noqa: E402
    HOST,
    KINDS,
    LABELS,
    PANEL,
    RUNBOKEH_COMMAND_FILE,
    Server,
    command_for,
    raise_file_limit,
    versions,
)
from websockets.asyncio.client import connect  # noqa: E402

APPS = HERE / "apps"
RESULTS = HERE / "results"

# key, label, unit, which way is better ("lower", "higher", or None for context only)
METRICS: list[tuple[str, str, str, str | None]] = [
    ("open_ms", "session open: GET + WS + ACK + PULL-DOC", "ms", "lower"),
    ("open_p90_ms", "  p90", "ms", "lower"),
    ("open_http_ms", "  page GET (session created)", "ms", "lower"),
    ("open_ws_ack_ms", "  WS handshake until ACK", "ms", "lower"),
    ("open_pull_ms", "  PULL-DOC-REQ until reply", "ms", "lower"),
    ("open_cpu_ms", "  server CPU per session open", "ms", "lower"),
    ("open_concurrent_per_s", "sessions opened/s (concurrent)", "1/s", "higher"),
    ("rt_ms", "widget round trip", "ms", "lower"),
    ("rt_p90_ms", "  p90", "ms", "lower"),
    ("rt_min_ms", "  min", "ms", "lower"),
    ("rt_cpu_ms", "  server CPU per round trip", "ms", "lower"),
    ("burst_msgs_per_s", "streaming, 1 session flat out: messages/s", "1/s", "higher"),
    ("burst_rows_per_s", "  rows/s", "1/s", "higher"),
    ("burst_cpu_ms_per_msg", "  server CPU per streamed message", "ms", "lower"),
    ("burst_latency_p50_ms", "  stream() -> client, p50", "ms", None),
    ("load_delivered_per_s", "streaming, N sessions at fixed rate: msgs/s", "1/s", "higher"),
    ("load_elapsed_over_nominal", "  wall time / nominal duration", "x", "lower"),
    ("load_latency_p50_ms", "  stream() -> client, p50", "ms", "lower"),
    ("load_latency_p99_ms", "  stream() -> client, p99", "ms", "lower"),
    ("load_cpu_pct", "  server CPU", "%", "lower"),
    ("load_cpu_ms_per_msg", "  server CPU per message", "ms", "lower"),
    ("bin_upload_echo_ms", "8 MB binary: upload + echo back", "ms", "lower"),
    ("bin_upload_echo_mb_per_s", "  MB/s moved (16 MB per round)", "MB/s", "higher"),
    ("bin_upload_cpu_ms", "  server CPU per upload + echo", "ms", "lower"),
    ("bin_download_ms", "8 MB binary: server -> client", "ms", "lower"),
    ("mem_per_session_kb", "memory per open session (RSS delta / N)", "KiB", "lower"),
    ("mem_idle_rss_mb", "  server RSS before (warmed up)", "MiB", "lower"),
    ("mem_loaded_rss_mb", "  server RSS with N sessions", "MiB", "lower"),
    ("startup_s", "server start until listening", "s", "lower"),
    ("many_failures", "N live sessions at once: failed or dropped", "", "lower"),
    ("many_open_per_s", "  sessions opened/s on the way up", "1/s", "higher"),
    ("many_mem_per_session_kb", "  memory per session (RSS delta / N)", "KiB", "lower"),
    ("many_rss_mb", "  server RSS with N sessions", "MiB", "lower"),
    ("many_canary_p50_ms", "  canary round trip meanwhile, p50", "ms", "lower"),
    ("many_canary_p99_ms", "  canary round trip meanwhile, p99", "ms", "lower"),
]


class Interrupted(Exception):
    pass


def _on_sigterm(signum, frame):  # turn SIGTERM into an exception so servers get stopped
    raise Interrupted(f"signal {signum}")


async def probe_extensions(server: Server, timeout: float) -> str:  # noqa: ASYNC109 (bounds several awaits)
    """What the server answers to a browser-like offer of permessage-deflate (context for 8 MB)."""
    from client import http_get, token_from_page

    page = await http_get(HOST, server.port, f"/{server.app}", timeout)
    token = token_from_page(page.body)
    ws = await connect(
        f"ws://{HOST}:{server.port}/{server.app}/ws",
        subprotocols=["bokeh", token],
        origin=f"http://{HOST}:{server.port}",
        compression="deflate",
        open_timeout=timeout,
        ping_interval=None,
    )
    try:
        return ws.response.headers.get("Sec-WebSocket-Extensions", "") or "none"
    finally:
        await ws.close()


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def summarise(raw: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for kind, metrics in raw.items():
        out[kind] = {}
        for key, values in metrics.items():
            vals = [v for v in values if v == v]  # drop NaN
            if vals:
                out[kind][key] = {
                    "median": statistics.median(vals),
                    "min": min(vals),
                    "max": max(vals),
                    "n": len(vals),
                }
    return out


def print_table(summary, kinds: list[str], params: Params, runs: int) -> list[dict]:
    rows = []
    name_w = max(len(label) for _, label, _, _ in METRICS) + 2
    header = f"{'figure (median over runs, [min-max])':<{name_w}} {'unit':>5}"
    for kind in kinds:
        header += f" {LABELS[kind]:>24}"
    reference = kinds[0]  # bokeh serve, or panel serve with --panel
    if len(kinds) == 2:
        header += f" {'ours/' + reference:>11}  goal"
    print(header)
    print("-" * len(header))
    for key, label, unit, better in METRICS:
        cells = []
        values = {}
        for kind in kinds:
            s = summary.get(kind, {}).get(key)
            if s is None:
                cells.append(f"{'n/a':>24}")
                continue
            values[kind] = s["median"]
            spread = f"[{fmt(s['min'])}-{fmt(s['max'])}]" if s["n"] > 1 else ""
            short = "*" if s["n"] < runs else ""
            cells.append(f"{fmt(s['median']) + short + ' ' + spread:>24}")
        line = f"{label:<{name_w}} {unit:>5} " + " ".join(cells)
        ratio = None
        verdict = ""
        if len(kinds) == 2 and reference in values and "runbokeh" in values and values[reference]:
            ratio = values["runbokeh"] / values[reference]
            if better == "lower":
                verdict = "<=1 " + ("ok" if ratio <= 1.0 else "WORSE")
            elif better == "higher":
                verdict = ">=1 " + ("ok" if ratio >= 1.0 else "WORSE")
            line += f" {ratio:>10.2f}  {verdict}"
        print(line)
        rows.append({"key": key, "label": label.strip(), "unit": unit, "better": better, **values, "ratio": ratio})
    print()
    print("* from fewer runs than the others: some runs failed (see the errors below).")
    print(
        f"session open: {params.open_count} sequential opens (+{params.open_concurrent} opened "
        f"{params.open_concurrency} at a time); round trip: {params.rt_count}; memory: "
        f"{params.mem_sessions} sessions held open; burst: {params.burst_messages} msgs x "
        f"{params.burst_rows} rows; load: {params.load_sessions} sessions x {params.load_hz:g} msg/s x "
        f"{params.load_rows} rows for {params.load_seconds:g} s; binary: {params.binary_count} x "
        f"{params.binary_elements * 8 / 1e6:g} MB each way; many: N = {params.many_sessions} sessions "
        f"({params.many_concurrency} opened at a time), {params.many_canary_count} canary round trips."
    )
    return rows


def main(argv: list[str] | None = None) -> int:  # noqa: C901 (one flat pass over the options and runs)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=(*KINDS, PANEL), help="run one server only")
    parser.add_argument(
        "--panel",
        action="store_true",
        help="compare panel serve with runbokeh on a Panel app (apps/panel_widget.py) instead",
    )
    parser.add_argument("--repeat", type=int, help="repetitions (default 5, or 2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smaller counts and 2 repetitions")
    parser.add_argument(
        "--groups",
        default=",".join(g for g, _, _ in GROUPS),
        help="comma-separated scenario groups to run (default: %(default)s; also: "
        + ",".join(g for g, _, _ in LONG_GROUPS) + ": 2,000 live sessions, several minutes per server and run)",
    )
    parser.add_argument("--bokeh-arg", action="append", default=[], help="extra argument for bokeh serve (repeatable)")
    parser.add_argument("--runbokeh-arg", action="append", default=[], help="extra argument for runbokeh (repeatable)")
    parser.add_argument(
        "--django-debug",
        action="store_true",
        help="run runbokeh with DJANGO_DEBUG=1 (default: DJANGO_DEBUG=0, as in production)",
    )
    parser.add_argument(
        "--django-settings",
        default="bench.django_settings",
        help="DJANGO_SETTINGS_MODULE for runbokeh (default %(default)s: the demo site serving only the bench app)",
    )
    parser.add_argument(
        "--apps-dir", type=Path, default=APPS, help="directory holding widget.py, stream.py, binary.py (default %(default)s)"
    )
    parser.add_argument("--max-minutes", type=float, default=30.0, help="stop starting new work after this long")
    parser.add_argument("--output", type=Path, help="JSON results file (default bench/results/<stamp>.json)")
    args = parser.parse_args(argv)

    params = Params.quick() if args.quick else Params()
    repeat = args.repeat or (2 if args.quick else 5)
    kinds = [args.only] if args.only else ([PANEL, "runbokeh"] if args.panel else list(KINDS))
    all_groups = PANEL_GROUPS if args.panel else GROUPS + LONG_GROUPS
    if args.panel:
        args.groups = ",".join(g for g, _, _ in PANEL_GROUPS)
    if "runbokeh" in kinds and not RUNBOKEH_COMMAND_FILE.exists():
        print(f"note: {RUNBOKEH_COMMAND_FILE} does not exist yet; running bokeh serve only.", file=sys.stderr)
        kinds = ["bokeh"]
    wanted = [g.strip() for g in args.groups.split(",") if g.strip()]
    groups = [g for g in all_groups if g[0] in wanted]
    unknown = set(wanted) - {g[0] for g in all_groups}
    if unknown:
        parser.error(f"unknown group(s) {sorted(unknown)}; choose from {[g[0] for g in all_groups]}")

    if any(g[0] == "many" for g in groups):
        # Before any server starts (they inherit it): each live session holds a socket in the
        # bench and one in the server, plus the page requests' and the server's own.
        raise_file_limit(2 * params.many_sessions + 1024)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    logdir = RESULTS / "logs" / stamp
    output = args.output or RESULTS / f"{stamp}.json"
    extra = {"bokeh": args.bokeh_arg, "runbokeh": args.runbokeh_arg, PANEL: []}
    env = {
        "bokeh": {},
        PANEL: {},
        "runbokeh": {
            "DJANGO_SETTINGS_MODULE": args.django_settings,
            "DJANGO_DEBUG": "1" if args.django_debug else "0",
            "PYTHONUNBUFFERED": "1",
        },
    }

    raw: dict[str, dict[str, list[float]]] = {k: defaultdict(list) for k in kinds}
    errors: list[dict] = []
    info: dict[str, dict] = {k: {} for k in kinds}
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _on_sigterm)

    print(f"bench: {', '.join(LABELS[k] for k in kinds)}; {repeat} run(s); groups {', '.join(g[0] for g in groups)}")
    print(f"logs: {logdir}")
    current: Server | None = None
    runs_done = 0
    try:
        for rep in range(repeat):
            if time.monotonic() - started > args.max_minutes * 60:
                print(f"time limit of {args.max_minutes:g} min reached; stopping after {rep} run(s)")
                break
            for group, app, scenarios in groups:
                order = kinds if rep % 2 == 0 else kinds[::-1]
                for kind in order:
                    server = current = Server(
                        kind,
                        args.apps_dir.resolve() / f"{app}.py",
                        logdir / f"run{rep + 1}-{group}-{kind}.log",
                        extra_args=extra[kind],
                        env=env[kind],
                    )
                    t0 = time.monotonic()
                    try:
                        server.start()
                    except RuntimeError as exc:
                        errors.append({"run": rep + 1, "server": kind, "scenario": f"{group}: start", "error": str(exc)})
                        print(f"  run {rep + 1} {group:<7} {LABELS[kind]:<12} FAILED TO START", flush=True)
                        continue
                    raw[kind]["startup_s"].append(server.startup_seconds)
                    info[kind]["command_" + app] = " ".join(server.command)
                    done = []
                    try:
                        if group == "widget" and "ws_extensions_offered_deflate" not in info[kind]:
                            try:
                                info[kind]["ws_extensions_offered_deflate"] = asyncio.run(
                                    probe_extensions(server, params.timeout)
                                )
                            except Exception as exc:  # context only
                                info[kind]["ws_extensions_offered_deflate"] = f"probe failed: {exc!r}"
                        for scenario in scenarios:
                            name = scenario.__name__
                            try:
                                limit = getattr(scenario, "time_limit", lambda p: p.timeout * 4)(params)
                                result = asyncio.run(asyncio.wait_for(scenario(server, params), limit))
                            except Exception as exc:  # asyncio.wait_for's TimeoutError too
                                msg = f"{type(exc).__name__}: {exc}"
                                if not server.alive():
                                    msg += f"\nserver exited with {server.proc.returncode}; log tail:\n{server.log_tail()}"
                                errors.append({"run": rep + 1, "server": kind, "scenario": name, "error": msg})
                                done.append(f"{name} FAILED")
                                if not server.alive():
                                    break
                                continue
                            for key, value in result.items():
                                raw[kind][key].append(value)
                            done.append(name)
                    finally:
                        server.stop()
                        current = None
                    print(
                        f"  run {rep + 1} {group:<7} {LABELS[kind]:<12} {time.monotonic() - t0:5.1f} s  "
                        + ", ".join(done),
                        flush=True,
                    )
            runs_done = rep + 1
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"interrupted ({exc!r}); reporting what was measured", file=sys.stderr)
        if current is not None:
            current.stop()

    summary = summarise(raw)
    print()
    rows = print_table(summary, kinds, params, runs_done)
    for kind in kinds:
        ext = info[kind].get("ws_extensions_offered_deflate")
        if ext:
            print(f"{LABELS[kind]}: WebSocket extensions negotiated when offered permessage-deflate: {ext}")
    if errors:
        print(f"\n{len(errors)} error(s):")
        for e in errors:
            first, _, rest = e["error"].partition("\n")
            print(f"  run {e['run']} {LABELS[e['server']]} {e['scenario']}: {first}")
            if rest:
                print("    " + rest.replace("\n", "\n    "))

    RESULTS.mkdir(parents=True, exist_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "stamp": stamp,
        "versions": versions(),
        "repeat": repeat,
        "quick": args.quick,
        "params": params.__dict__,
        "commands": {k: " ".join(command_for(k, APPS / "<app>.py", 0, extra[k])) for k in kinds},
        "env": {k: env[k] for k in kinds},
        "info": info,
        "raw": {k: dict(v) for k, v in raw.items()},
        "summary": summary,
        "table": rows,
        "errors": errors,
        "logs": str(logdir),
    }
    output.write_text(json.dumps(doc, indent=2, default=str))
    print(f"\nresults: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

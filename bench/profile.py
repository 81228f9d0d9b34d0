#!/usr/bin/env python
"""Profile one server with py-spy while one scenario group of the bench runs against it.

    .venv/bin/python bench/profile.py binary                    # runbokeh, the 8 MB scenarios
    .venv/bin/python bench/profile.py stream --server bokeh     # bokeh serve, streaming
    .venv/bin/python bench/profile.py widget --top 40 --output /tmp/widget.raw

Starts the server as bench/run.py does, runs the group's scenarios once unprofiled (warm-up:
imports, first sessions), then again under ``py-spy record --nonblocking`` (raw collapsed
stacks), and prints the functions with the most samples: by self time, then inclusive. The
raw file can be turned into a flame graph with any collapsed-stack tool. Prints figures;
asserts nothing. Every scenario has the bench's time bound.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scenarios import GROUPS, LONG_GROUPS, Params  # noqa: E402
from servers import RUNBOKEH_ENV, VENV_BIN, Server  # noqa: E402


def frame_key(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func file.py:123``."""
    name, _, where = frame.partition(" (")
    return f"{name} {where.rstrip(')').rsplit('/', 1)[-1]}".strip()


def summarise(raw: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = stack.split(";")
        total += samples
        own[frame_key(frames[-1])] += samples
        for key in {frame_key(f).rsplit(":", 1)[0] for f in frames}:
            inclusive[key] += samples
    if not total:
        return "no samples (did py-spy attach? it needs ptrace permission)"
    lines = [f"{total} samples", "", "self time:"]
    lines += [f"{n:7d} {100 * n / total:5.1f}%  {k}" for k, n in own.most_common(top)]
    lines += ["", "inclusive (function and what it calls):"]
    lines += [f"{n:7d} {100 * n / total:5.1f}%  {k}" for k, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    groups = {name: (app, scenarios) for name, app, scenarios in GROUPS + LONG_GROUPS}
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("group", choices=sorted(groups), help="the bench scenario group to run")
    parser.add_argument("--server", choices=("runbokeh", "bokeh"), default="runbokeh")
    parser.add_argument("--quick", action="store_true", help="the bench's --quick counts")
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second (default %(default)s)")
    parser.add_argument("--top", type=int, default=25, help="functions to list (default %(default)s)")
    parser.add_argument("--output", type=Path, help="raw py-spy output (default bench/results/profile-<stamp>.raw)")
    args = parser.parse_args()

    app, scenarios = groups[args.group]
    params = Params.quick() if args.quick else Params()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    output = args.output or HERE / "results" / f"profile-{args.group}-{args.server}-{stamp}.raw"
    output.parent.mkdir(parents=True, exist_ok=True)
    server = Server(args.server, HERE / "apps" / f"{app}.py", HERE / "results" / "logs" / f"profile-{stamp}.log",
                    env=RUNBOKEH_ENV if args.server == "runbokeh" else {})
    server.start()
    spy = None
    try:
        def run_all() -> None:
            for scenario in scenarios:
                limit = getattr(scenario, "time_limit", lambda p: p.timeout * 4)(params)
                print(f"  {scenario.__name__}: {asyncio.run(asyncio.wait_for(scenario(server, params), limit))}")

        print("warm-up run (not profiled)")
        run_all()
        spy = subprocess.Popen(
            [str(VENV_BIN / "py-spy"), "record", "--nonblocking", "-r", str(args.rate), "-f", "raw",
             "-o", str(output), "--pid", str(server.proc.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        time.sleep(1.0)  # py-spy attaches
        if spy.poll() is not None:
            raise SystemExit(f"py-spy exited at once: {spy.stderr.read().decode(errors='replace')}")
        cpu0 = server.cpu()
        print("profiled run")
        run_all()
        print(f"server CPU during the profiled run: {server.cpu() - cpu0:.2f} s")
    finally:
        if spy is not None and spy.poll() is None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(spy.pid, signal.SIGKILL)
        server.stop()
    print(f"raw stacks: {output}\n")
    print(summarise(output, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())

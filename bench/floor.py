"""The least memory and start-up time a Bokeh server under Django can have, against bokeh serve.

``bench/run.py`` compares whole servers: runbokeh's baseline RSS and start-up are ~1.7x bokeh
serve's. This asks how much of that any server on this project's stack must pay. In fresh
interpreters, it imports what serving Bokeh sessions needs (bokeh's documents, models,
protocol, embedding and application handlers) plus the stack DESIGN.md prescribes (Django, set
up with nothing but daphne and Channels installed, daphne's server with Twisted's asyncio
reactor, Channels' routing), and reads its RSS and the time once they are imported. No
settings, site, middleware or project code are loaded, and nothing listens: the floor is below
what any real server on this stack would reach.

Against it, the whole servers, started as ``bench/run.py`` starts them (widget app, time until
the port accepts, RSS after 3 sessions opened and closed): bokeh serve and runbokeh.

    .venv/bin/python bench/floor.py [--repeat N]

Prints medians over N runs (default 5), the rows' order reversed every other run, and each
figure's ratio to bokeh serve's. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from client import Session
from servers import HOST, REPO, RUNBOKEH_ENV, Server

APP = Path(__file__).resolve().parent / "apps" / "widget.py"

#: What serving Bokeh sessions needs from bokeh, whatever the server around it.
BOKEH_IMPORTS = """
import bokeh.document, bokeh.models, bokeh.protocol, bokeh.embed, bokeh.application
"""
#: The stack alone: Django with only daphne and Channels installed, daphne's server, Channels' routing.
STACK_IMPORTS = """
import django
from django.conf import settings
settings.configure(INSTALLED_APPS=["daphne", "channels"])
django.setup()
import daphne.server, channels.routing, django.http, django.urls
"""
#: Twisted's TCP module imports pyOpenSSL whenever it is installed (for its TLS support), and
#: daphne needs it for TLS; hiding it shows the floor of a server that never offers TLS.
WITHOUT_TLS = "import sys\nsys.modules['OpenSSL'] = None\n"
#: The child's last words: the wall clock once its imports are done, and its RSS then.
REPORT = """
import time as _time
for line in open("/proc/self/status"):
    if line.startswith("VmRSS:"):
        print(_time.time(), int(line.split()[1]) * 1024)
"""

FLOORS = {
    "floor: bokeh + Django + daphne + Channels": BOKEH_IMPORTS + STACK_IMPORTS,
    "floor, without pyOpenSSL": WITHOUT_TLS + BOKEH_IMPORTS + STACK_IMPORTS,
    "bokeh's part alone": BOKEH_IMPORTS,
}
SERVERS = {"bokeh serve (whole server)": "bokeh", "runbokeh (whole server)": "runbokeh"}


def measure_floor(code: str) -> tuple[float, int]:
    """Seconds from starting a fresh interpreter until it has imported ``code``, and its RSS then.

    Timed to the child's own clock reading, not to its exit: tearing a big heap down at exit
    takes time no server spends before it listens.
    """
    start = time.time()
    done = subprocess.run([sys.executable, "-c", code + REPORT], cwd=REPO, capture_output=True, text=True, check=True)
    imported_at, rss = done.stdout.split()[-2:]
    return float(imported_at) - start, int(rss)


def measure_server(kind: str, log_dir: Path) -> tuple[float, int]:
    """Seconds until the server's port accepts, and its RSS after 3 sessions opened and closed."""
    server = Server(kind, APP, log_dir / f"floor-{kind}.log", env=RUNBOKEH_ENV if kind == "runbokeh" else {})
    server.start()
    try:

        async def warm_up() -> None:
            for _ in range(3):
                session = await Session.open(HOST, server.port, server.app, 60.0)
                await session.close()
            await asyncio.sleep(1.0)

        asyncio.run(warm_up())
        return server.startup_seconds, server.rss()
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs (default 5)")
    args = parser.parse_args()
    log_dir = REPO / "bench" / "results" / "logs" / time.strftime("floor-%Y%m%d-%H%M%S")
    figures: dict[str, list[tuple[float, int]]] = {name: [] for name in [*SERVERS, *FLOORS]}
    for run in range(args.repeat):
        names = list(figures)
        if run % 2:
            names.reverse()  # alternate the order, so drift favours none
        for name in names:
            if name in SERVERS:
                figures[name].append(measure_server(SERVERS[name], log_dir))
            else:
                figures[name].append(measure_floor(FLOORS[name]))
        print(f"run {run + 1}/{args.repeat} done", file=sys.stderr)

    reference = next(iter(SERVERS))
    ref_seconds = statistics.median(s for s, _ in figures[reference])
    ref_rss = statistics.median(r for _, r in figures[reference])
    print(f"medians of {args.repeat} runs; ratios to {reference}")
    print(f"{'':44} {'seconds':>8} {'ratio':>6} {'RSS MiB':>8} {'ratio':>6}")
    for name, runs in figures.items():
        seconds = statistics.median(s for s, _ in runs)
        rss = statistics.median(r for _, r in runs)
        print(f"{name:44} {seconds:8.2f} {seconds / ref_seconds:6.2f} {rss / 2**20:8.1f} {rss / ref_rss:6.2f}")
    print("(servers: until the port accepts, RSS after 3 sessions; floors: until the imports are done)")


if __name__ == "__main__":
    main()

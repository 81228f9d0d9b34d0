"""Paired WebSocket handshakes: several servers at once, connections alternating between them.

On a noisy machine two runs of the same server differ by up to a third, so a change of a few
per cent in the handshake is lost between ``bench/run.py``'s alternating runs. Here all the
servers run at the same time and each block of connections goes to them in turn, one by one,
so whatever slows the machine slows them all alike; the ratio is taken per block.

    .venv/bin/python bench/paired.py [--fresh [--pause MS]] [--count N] [--blocks B] TARGET [TARGET ...]

A TARGET is ``bokeh`` (bokeh serve) or the path of a checkout of this project (its runbokeh,
with its own code, on the demo site's settings). Each connection opens the widget app's
WebSocket and waits for the ACK. Without ``--fresh`` every connection reconnects with one
token (the handshake alone); with it, each one follows its own page GET (the handshake of a
new session, as a browser's first), after ``--pause`` milliseconds if given. Prints, per
target, the median ACK latency and server CPU per connection, and the median over blocks of
their ratio to the first target. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers
from client import http_get, token_from_page
from servers import HOST, RUNBOKEH_ENV, Server
from websockets.asyncio.client import connect

APP = "widget"


async def handshake(server: Server, token: str | None, pause: float = 0.0) -> tuple[float, str]:
    """Seconds from the WebSocket connect until the ACK, and the token used (a new page's if
    ``token`` is None, with ``pause`` seconds between the page and the connect)."""
    if token is None:
        token = token_from_page((await http_get(HOST, server.port, f"/{APP}")).body)
        if pause:
            await asyncio.sleep(pause)
    start = time.perf_counter()
    websocket = await connect(
        f"ws://{HOST}:{server.port}/{APP}/ws", subprotocols=["bokeh", token],
        origin=f"http://{HOST}:{server.port}", compression=None, max_size=None, ping_interval=None, proxy=None,
    )
    await websocket.recv()  # the ACK's header frame
    elapsed = time.perf_counter() - start
    await websocket.close()
    return elapsed, token


async def measure(
    targets: list[Server], count: int, blocks: int, fresh: bool, pause: float = 0.0
) -> list[list[tuple[float, float]]]:
    tokens = {}
    for i, server in enumerate(targets):
        for _ in range(20):  # warm-up
            _, tokens[i] = await handshake(server, None)
    figures: list[list[tuple[float, float]]] = [[] for _ in targets]
    for block in range(blocks):
        times: list[list[float]] = [[] for _ in targets]
        cpu_before = [server.cpu() for server in targets]
        for _ in range(count):
            for i, server in enumerate(targets):
                elapsed, _ = await handshake(server, None if fresh else tokens[i], pause)
                times[i].append(elapsed)
        for i, server in enumerate(targets):
            figures[i].append((1000 * statistics.median(times[i]), 1000 * (server.cpu() - cpu_before[i]) / count))
        print(f"block {block}: " + "  ".join(f"ack {a:.2f} ms cpu {c:.2f} ms" for a, c in (f[-1] for f in figures)), flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="+", help="'bokeh' or the path of a checkout")
    parser.add_argument("--fresh", action="store_true", help="a page GET (a new session) before each connection")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="with --fresh: milliseconds between the page and the WebSocket (default 0)")
    parser.add_argument("--count", type=int, default=25, help="connections per target and block (default 25)")
    parser.add_argument("--blocks", type=int, default=6, help="blocks (default 6)")
    args = parser.parse_args()
    logs = Path(__file__).resolve().parent / "results" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    targets = []
    try:
        for i, target in enumerate(args.targets):
            kind = "bokeh" if target == "bokeh" else "runbokeh"
            servers.REPO = Path(__file__).resolve().parent.parent if kind == "bokeh" else Path(target).resolve()
            server = Server(kind, servers.REPO / "bench" / "apps" / f"{APP}.py", logs / f"paired-{i}-{kind}.log",
                            env=RUNBOKEH_ENV if kind == "runbokeh" else {})
            server.start()
            targets.append(server)
        figures = asyncio.run(measure(targets, args.count, args.blocks, args.fresh, args.pause / 1000))
    finally:
        for server in targets:
            server.stop()
    for target, own in zip(args.targets, figures, strict=True):
        ack = statistics.median(a / b[0] for (a, _), b in zip(own, figures[0], strict=True))
        cpu = statistics.median(c / b[1] for (_, c), b in zip(own, figures[0], strict=True))
        median_ack, median_cpu = (statistics.median(column) for column in zip(*own, strict=True))
        print(f"{target}: ack {median_ack:.2f} ms, cpu {median_cpu:.2f} ms per connection; "
              f"to {args.targets[0]}: ack {ack:.3f}, cpu {cpu:.3f}")


if __name__ == "__main__":
    main()

"""The measurements. Each scenario takes a started server and returns a dict of figures for one run.

Every wait is bounded; a scenario that cannot finish raises, and the runner records the error.
"""

from __future__ import annotations

import asyncio
import statistics
import struct
import time
from dataclasses import dataclass

import numpy as np
from client import (
    BenchError,
    Message,
    Session,
    buffer_of,
    find_model_id,
    iter_events,
    map_entries,
    ndarray_column,
    ndarray_length,
)
from servers import HOST, Server


@dataclass
class Params:
    open_warmup: int = 3
    open_count: int = 30  # sequential session opens
    # Sessions opened ... (60, not 20: a full garbage collection of either server takes as
    # long as one or two opens, and in 20 opens whether one lands inside the window decided
    # the figure: bokeh serve 13 opens/s with 20, 9 with 60, on the same machine.)
    open_concurrent: int = 60
    open_concurrency: int = 10  # ... this many at a time
    rt_warmup: int = 5
    rt_count: int = 100  # widget round trips
    mem_sessions: int = 50  # sessions held open for the memory figure
    burst_messages: int = 500
    burst_rows: int = 100
    load_sessions: int = 20
    load_hz: float = 50.0
    load_rows: int = 10
    load_seconds: float = 3.0
    binary_count: int = 5
    binary_elements: int = 1_000_000  # float64 -> 8 MB
    many_sessions: int = 2000  # live sessions held at once (group "many")
    many_concurrency: int = 20  # ... opened this many at a time
    many_canary_count: int = 200  # canary round trips while they are all connected
    timeout: float = 60.0  # any single wait

    @classmethod
    def quick(cls) -> Params:
        return cls(
            open_count=10,
            open_concurrent=10,
            rt_count=30,
            mem_sessions=25,
            burst_messages=200,
            load_sessions=10,
            load_seconds=2.0,
            binary_count=3,
            many_sessions=300,
            many_canary_count=50,
        )


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(values, q))


def ms(seconds: float) -> float:
    return seconds * 1000.0


# ---------------------------------------------------------------------------------------------
# Widget app


async def session_open(server: Server, p: Params) -> dict[str, float]:
    """Sequential opens (page GET + WS + ACK + PULL-DOC), then a burst of concurrent opens."""
    for _ in range(p.open_warmup):
        s = await Session.open(HOST, server.port, server.app, p.timeout)
        await s.close()
    totals, https, acks, pulls = [], [], [], []
    cpu0 = server.cpu()
    for _ in range(p.open_count):
        s = await Session.open(HOST, server.port, server.app, p.timeout)
        find_model_id(s.doc, "echo")  # the app code really ran for this session
        t = s.timings
        totals.append(t.total)
        https.append(t.http)
        acks.append(t.ws_ack)
        pulls.append(t.pull)
        await s.close()
    cpu_per_open = (server.cpu() - cpu0) / p.open_count
    return {
        "open_ms": ms(statistics.median(totals)),
        "open_p90_ms": ms(pct(totals, 90)),
        "open_http_ms": ms(statistics.median(https)),
        "open_ws_ack_ms": ms(statistics.median(acks)),
        "open_pull_ms": ms(statistics.median(pulls)),
        "open_cpu_ms": ms(cpu_per_open),
    }


async def session_open_concurrent(server: Server, p: Params) -> dict[str, float]:
    """``open_concurrent`` opens, ``open_concurrency`` at a time; every pulled document is checked."""
    sem = asyncio.Semaphore(p.open_concurrency)
    opened: list[Session] = []

    async def one() -> None:
        async with sem:
            s = await Session.open(HOST, server.port, server.app, p.timeout)
            opened.append(s)
            find_model_id(s.doc, "echo")  # the app code really ran for this session

    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(p.open_concurrent))), p.timeout * 2)
        elapsed = time.perf_counter() - t0
    finally:
        await asyncio.gather(*(s.close() for s in opened))
    return {"open_concurrent_per_s": p.open_concurrent / elapsed}


async def roundtrip_once(s: Session, i: int, timeout: float) -> float:  # noqa: ASYNC109 (bounds one wait)
    """One widget round trip on ``s``: seconds from sending ``input.value`` until ``echo`` shows it."""
    input_id = find_model_id(s.doc, "input")
    echo_id = find_model_id(s.doc, "echo")
    value = f"rt-{i}-{time.monotonic_ns()}"

    def is_echo(m: Message) -> bool:
        # The echo is a bokeh Div ("text") or, in the Panel app, a Panel TextInput ("value").
        return any(
            e.get("model", {}).get("id") == echo_id and e.get("attr") in ("text", "value") and e.get("new") == value
            for e in iter_events(m)
        )

    t0 = time.perf_counter()
    await s.set_property(input_id, "value", value)
    reply = await s.wait_for(is_echo, timeout)
    return reply.received - t0


async def widget_roundtrip(server: Server, p: Params) -> dict[str, float]:
    """PATCH-DOC ``input.value`` -> Python on_change -> PATCH-DOC ``echo.text`` back."""
    s = await Session.open(HOST, server.port, server.app, p.timeout)
    try:

        async def once(i: int) -> float:
            return await roundtrip_once(s, i, p.timeout)

        for i in range(p.rt_warmup):
            await once(-i - 1)
        cpu0 = server.cpu()
        times = [await once(i) for i in range(p.rt_count)]
        cpu = (server.cpu() - cpu0) / p.rt_count
    finally:
        await s.close()
    return {
        "rt_ms": ms(statistics.median(times)),
        "rt_p90_ms": ms(pct(times, 90)),
        "rt_min_ms": ms(min(times)),
        "rt_cpu_ms": ms(cpu),
    }


async def memory_per_session(server: Server, p: Params) -> dict[str, float]:
    """RSS growth of the server (and its descendants) per open session, sessions held open."""
    for _ in range(p.open_warmup):
        s = await Session.open(HOST, server.port, server.app, p.timeout)
        await s.close()
    await asyncio.sleep(1.0)
    before = server.rss()
    sessions: list[Session] = []
    try:
        for _ in range(p.mem_sessions):
            sessions.append(await Session.open(HOST, server.port, server.app, p.timeout))
            find_model_id(sessions[-1].doc, "echo")
        await asyncio.sleep(1.0)
        after = server.rss()
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
    return {
        "mem_per_session_kb": (after - before) / p.mem_sessions / 1024,
        "mem_idle_rss_mb": before / 2**20,
        "mem_loaded_rss_mb": after / 2**20,
    }


async def many_sessions(server: Server, p: Params) -> dict[str, float]:
    """``many_sessions`` live sessions at once, then a canary session's round trips.

    The canary opens first. Then ``many_sessions`` sessions are opened, ``many_concurrency``
    at a time, and all are held open (each with its reader). A failed open is counted, not
    retried, and the run goes on; so is a session whose connection dropped by the time of the
    canary. Memory per session is the RSS growth over the opened sessions, read 1 s after
    the last open. Then ``many_canary_count`` round trips on the canary.
    """
    canary = await Session.open(HOST, server.port, server.app, p.timeout)
    sessions: list[Session] = []
    failures: list[str] = []
    try:
        for i in range(p.rt_warmup):
            await roundtrip_once(canary, -i - 1, p.timeout)
        await asyncio.sleep(1.0)
        before = server.rss()
        sem = asyncio.Semaphore(p.many_concurrency)

        async def one() -> None:
            async with sem:
                try:
                    s = await Session.open(HOST, server.port, server.app, p.timeout)
                except Exception as exc:  # counted; the scenario's figure is the number of failures
                    failures.append(f"{type(exc).__name__}: {exc}"[:300])
                    return
                sessions.append(s)
                find_model_id(s.doc, "echo")  # the app code really ran for this session

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(p.many_sessions)))
        open_seconds = time.perf_counter() - t0
        if not sessions:
            raise BenchError(f"no session of {p.many_sessions} opened; first error: {failures[0]}")
        await asyncio.sleep(1.0)
        after = server.rss()
        canary_times = [await roundtrip_once(canary, i, p.timeout) for i in range(p.many_canary_count)]
        dropped = sum(1 for s in sessions if s.error is not None)
    finally:
        close_sem = asyncio.Semaphore(100)

        async def close(s: Session) -> None:
            async with close_sem:
                await s.close()

        await asyncio.gather(*(close(s) for s in sessions), canary.close())
    if failures:
        print(f"    many_sessions: {len(failures)} open(s) failed; first: {failures[0]}", flush=True)
    return {
        "many_failures": len(failures) + dropped,
        "many_open_per_s": len(sessions) / open_seconds,
        "many_mem_per_session_kb": (after - before) / len(sessions) / 1024,
        "many_rss_mb": after / 2**20,
        "many_canary_p50_ms": ms(pct(canary_times, 50)),
        "many_canary_p99_ms": ms(pct(canary_times, 99)),
    }


def _many_sessions_time_limit(p: Params) -> float:
    # Opening is the long part: allow 5 opens/s, on a busy machine, plus the canary.
    return 2 * p.timeout + p.many_sessions / 5 + p.many_canary_count


many_sessions.time_limit = _many_sessions_time_limit  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# Streaming app


class RowCounter:
    """Counts streamed rows on one session and collects server->client latency from column ``t``."""

    def __init__(self, source_id: str) -> None:
        self.source_id = source_id
        self.rows = 0
        self.messages = 0
        self.events = 0
        self.last = 0.0
        self.latencies: list[float] = []
        self.done = asyncio.Event()
        self.target = 0
        self.error: str | None = None

    def check(self) -> None:
        if self.error is not None:
            raise BenchError(f"stream: {self.error}")

    def __call__(self, m: Message) -> None:
        if m.msgtype in ("ERROR", "__closed__"):
            self.error = m.content.get("text") or m.content.get("error")
            self.done.set()
            return
        counted = False
        for e in iter_events(m):
            if e.get("kind") != "ColumnsStreamed" or e.get("model", {}).get("id") != self.source_id:
                continue
            data = map_entries(e.get("data"))
            n = ndarray_length(data.get("x"))
            self.rows += n
            self.events += 1
            counted = True
            raw = buffer_of(data.get("t"), m.buffers)
            if raw is not None and len(raw) >= 8:
                (stamp,) = struct.unpack_from("<d", raw, 0)
                self.latencies.append(m.received_wall - stamp)
            elif isinstance(data.get("t"), list) and data["t"]:
                self.latencies.append(m.received_wall - float(data["t"][0]))
        if counted:
            self.messages += 1
            self.last = m.received
            if self.target and self.rows >= self.target:
                self.done.set()


async def _stream_session(server: Server, p: Params) -> tuple[Session, str, RowCounter]:
    s = await Session.open(HOST, server.port, server.app, p.timeout)
    ctrl_id = find_model_id(s.doc, "ctrl")
    counter = RowCounter(find_model_id(s.doc, "stream"))
    s.on_message = counter
    return s, ctrl_id, counter


async def stream_burst(server: Server, p: Params) -> dict[str, float]:
    """One session; the server streams ``burst_messages`` x ``burst_rows`` rows as fast as it can."""
    s, ctrl_id, counter = await _stream_session(server, p)
    try:
        counter.target = 20 * p.burst_rows
        await s.set_property(ctrl_id, "value", f"burst:warm:20:{p.burst_rows}")
        await asyncio.wait_for(counter.done.wait(), p.timeout)
        counter.check()

        counter.rows = counter.messages = counter.events = 0
        counter.latencies.clear()
        counter.done.clear()
        counter.target = p.burst_messages * p.burst_rows
        cpu0 = server.cpu()
        t0 = time.perf_counter()
        await s.set_property(ctrl_id, "value", f"burst:{time.monotonic_ns()}:{p.burst_messages}:{p.burst_rows}")
        try:
            await asyncio.wait_for(counter.done.wait(), p.timeout)
        except TimeoutError:
            raise BenchError(
                f"burst: got {counter.rows} of {counter.target} rows in {p.timeout:.0f} s"
            ) from None
        counter.check()
        elapsed = counter.last - t0
        cpu = server.cpu() - cpu0
    finally:
        await s.close()
    return {
        "burst_msgs_per_s": counter.messages / elapsed,
        "burst_rows_per_s": counter.rows / elapsed,
        "burst_cpu_ms_per_msg": ms(cpu / p.burst_messages),
        "burst_latency_p50_ms": ms(pct(counter.latencies, 50)),
        "burst_ws_messages": counter.messages,
    }


async def stream_load(server: Server, p: Params) -> dict[str, float]:
    """``load_sessions`` sessions, each streamed ``load_hz`` times a second for ``load_seconds``."""
    pairs = []
    try:
        for _ in range(p.load_sessions):
            pairs.append(await _stream_session(server, p))
        per_session = int(p.load_hz * p.load_seconds) * p.load_rows
        for _, _, counter in pairs:
            counter.target = per_session
        cpu0 = server.cpu()
        t0 = time.perf_counter()
        tag = time.monotonic_ns()
        for s, ctrl_id, _ in pairs:
            await s.set_property(ctrl_id, "value", f"rate:{tag}:{p.load_hz}:{p.load_rows}:{p.load_seconds}")
        limit = p.load_seconds + p.timeout
        try:
            await asyncio.wait_for(asyncio.gather(*(c.done.wait() for _, _, c in pairs)), limit)
        except TimeoutError:
            got = sum(c.rows for _, _, c in pairs)
            raise BenchError(
                f"load: got {got} of {per_session * len(pairs)} rows in {limit:.0f} s"
            ) from None
        for _, _, c in pairs:
            c.check()
        end = max(c.last for _, _, c in pairs)
        elapsed = end - t0
        cpu = server.cpu() - cpu0
    finally:
        await asyncio.gather(*(s.close() for s, _, _ in pairs))
    counters = [c for _, _, c in pairs]
    latencies = [lat for c in counters for lat in c.latencies]
    messages = sum(c.messages for c in counters)
    expected_messages = int(p.load_hz * p.load_seconds) * len(counters)
    return {
        "load_delivered_per_s": expected_messages / elapsed,
        "load_elapsed_over_nominal": elapsed / p.load_seconds,
        "load_latency_p50_ms": ms(pct(latencies, 50)),
        "load_latency_p99_ms": ms(pct(latencies, 99)),
        "load_cpu_pct": 100.0 * cpu / elapsed,
        "load_cpu_ms_per_msg": ms(cpu / expected_messages),
        "load_ws_messages": messages,
    }


# ---------------------------------------------------------------------------------------------
# Binary app


def _echo_buffer(m: Message, echo_id: str) -> bytes | None:
    for e in iter_events(m):
        if e.get("model", {}).get("id") != echo_id:
            continue
        if e.get("kind") == "ModelChanged" and e.get("attr") == "data":
            column = map_entries(e.get("new")).get("x")
        elif e.get("kind") == "ColumnDataChanged":
            column = map_entries(e.get("data")).get("x")
        else:
            continue
        raw = buffer_of(column, m.buffers)
        if raw is not None:
            return raw
    return None


async def binary_update(server: Server, p: Params) -> dict[str, float]:
    """8 MB float64 column: upload + server echo, and server -> client only."""
    s = await Session.open(HOST, server.port, server.app, p.timeout)
    nbytes = p.binary_elements * 8
    try:
        upload_id = find_model_id(s.doc, "upload")
        echo_id = find_model_id(s.doc, "echo")
        ctrl_id = find_model_id(s.doc, "ctrl")

        async def upload(k: float) -> float:
            payload = np.full(p.binary_elements, k, dtype="<f8").tobytes()
            ref = f"bench-buf-{time.monotonic_ns()}"
            event = {
                "kind": "ModelChanged",
                "model": {"id": upload_id},
                "attr": "data",
                "new": {"type": "map", "entries": [["x", ndarray_column(ref, p.binary_elements)]]},
            }
            t0 = time.perf_counter()
            await s.send("PATCH-DOC", {"events": [event]}, buffers=[(ref, payload)])
            got: dict[str, bytes] = {}

            def match(m: Message) -> bool:
                raw = _echo_buffer(m, echo_id)
                if raw is not None and raw[:8] == payload[:8]:
                    got["raw"] = raw
                    return True
                return False

            reply = await s.wait_for(match, p.timeout)
            elapsed = reply.received - t0
            if got["raw"] != payload:
                raise BenchError(f"echoed buffer differs ({len(got['raw'])} bytes back, {nbytes} sent)")
            return elapsed

        async def download(k: float) -> float:
            expect = struct.pack("<d", k)
            got: dict[str, bytes] = {}

            def match(m: Message) -> bool:
                raw = _echo_buffer(m, echo_id)
                if raw is not None and raw[:8] == expect:
                    got["raw"] = raw
                    return True
                return False

            t0 = time.perf_counter()
            await s.set_property(ctrl_id, "value", f"gen:{k}")
            reply = await s.wait_for(match, p.timeout)
            if len(got["raw"]) != nbytes:
                raise BenchError(f"downloaded buffer has {len(got['raw'])} bytes, expected {nbytes}")
            return reply.received - t0

        await upload(0.5)
        cpu0 = server.cpu()
        ups = [await upload(float(i + 1)) for i in range(p.binary_count)]
        cpu_up = (server.cpu() - cpu0) / p.binary_count
        await download(1000.0)
        downs = [await download(float(1001 + i)) for i in range(p.binary_count)]
    finally:
        await s.close()
    return {
        "bin_upload_echo_ms": ms(statistics.median(ups)),
        "bin_upload_echo_mb_per_s": 2 * nbytes / 1e6 / statistics.median(ups),
        "bin_upload_cpu_ms": ms(cpu_up),
        "bin_download_ms": ms(statistics.median(downs)),
    }


# name -> (app file stem, coroutine). Scenarios in one group share a server process.
GROUPS: list[tuple[str, str, list]] = [
    ("widget", "widget", [widget_roundtrip, session_open, session_open_concurrent]),
    ("memory", "widget", [memory_per_session]),
    ("stream", "stream", [stream_burst, stream_load]),
    ("binary", "binary", [binary_update]),
]

#: Groups run only when named in --groups (each takes minutes per server and run).
LONG_GROUPS: list[tuple[str, str, list]] = [
    ("many", "widget", [many_sessions]),
]

#: run.py --panel: the widget scenarios on a Panel app, under panel serve and runbokeh.
PANEL_GROUPS: list[tuple[str, str, list]] = [
    ("panel", "panel_widget", [widget_roundtrip, session_open, session_open_concurrent]),
]

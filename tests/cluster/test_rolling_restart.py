"""A rolling restart behind nginx while sessions are in use (the cluster-faults issue's Done-when).

Its own cluster (never the shared ``cluster`` fixture, which must stay healthy): a redis-server,
two runbokeh processes A and B with a short ``--drain-timeout``, and nginx from
docs/deploy/nginx.conf over them. A is restarted (SIGTERM, wait for its exit, a new runbokeh on
the same port, wait until it answers), then B the same way.

1. Protocol level: 20 simulated users behave as BokehJS + recover.js: page through nginx, its
   WebSocket through nginx with the page's token, round trips for the whole test; on an
   unrequested close a reconnect with the original token (at once, then after 2, 4, 8, 16 s);
   on 4010 a "reload" (GET the page again, go on with the new token). The promise: no page GET
   through nginx fails, every close carries a code and a reason, every user works again within
   a bound after each restart, every user whose session was lost got a new one by itself.
2. Chromium: a few real pages through nginx; both processes restarted in turn; each page must
   work again (a new document, a widget round trip) without anything done by the test. Needs
   recover.js (the page script that reloads on 4010).

Every process is started here and stopped by its PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import websockets
from bokeh.util.token import get_session_id
from websockets.exceptions import ConnectionClosed

from tests.cluster.conftest import SETTINGS, _require, server_env
from tests.cluster.helpers import (
    INSECURE_TLS,
    NGINX,
    REDIS_SERVER,
    TIMEOUT,
    HookLog,
    Nginx,
    Peer,
    RedisServer,
    http_get,
    model,
    opened_locally,
    relayed,
    token_in_page,
    ws_url,
)
from tests.live import LiveServer, free_port

pytestmark = pytest.mark.redis

#: Seconds a stopping process waits for its live sessions to end (runbokeh --drain-timeout).
DRAIN_TIMEOUT = 3
#: Simulated users in the protocol-level test.
USERS = 20
#: Seconds within which every user must be working again after a restart.
RECOVERY_BOUND = 30
#: BokehJS's reconnect delays after an unrequested close (PROTOCOL.md 4.11); then it gives up.
BACKOFF = (0, 2, 4, 8, 16)
#: Seconds between a user's round trips.
THINK_TIME = 0.2


# ---------------------------------------------------------------------------
# The cluster of this module
# ---------------------------------------------------------------------------


class Restartable:
    """A runbokeh process on a fixed port that can be restarted there; keeps every run's log."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_dir = log_dir
        self.env = env
        self.port = free_port()
        self.old_logs: list[str] = []
        self.exits: list[tuple[int | None, float]] = []  # (returncode, seconds from SIGTERM to exit)
        self.server = self._start()

    def _start(self) -> LiveServer:
        return LiveServer(
            "--drain-timeout", str(DRAIN_TIMEOUT), settings=SETTINGS, env=self.env, port=self.port
        )

    @property
    def pid(self) -> int:
        return self.server.process.pid

    @property
    def log(self) -> str:
        return "".join(self.old_logs) + self.server.log

    def stop(self) -> None:
        """SIGTERM by PID, wait for the exit (SIGKILL past the drain's bound)."""
        started = time.monotonic()
        code = self.server.stop(timeout=DRAIN_TIMEOUT + 15)
        self.exits.append((code, time.monotonic() - started))
        log = self.server.log
        self.old_logs.append(f"--- pid {self.server.process.pid} exited with {code} ---\n{log}")
        # Kept for a look after the test (the next run on this port overwrites LiveServer's file).
        (self.log_dir / f"{self.name}-{self.server.process.pid}.log").write_text(log)

    def restart(self) -> None:
        self.stop()
        self.server = self._start()

    def describe(self, tail: int = 3000) -> str:
        return f"--- {self.name} :{self.port} (pid {self.pid}) ---\n{self.log[-tail:]}"


@dataclass
class RollingCluster:
    redis: RedisServer
    a: Restartable
    b: Restartable
    nginx: Nginx

    def describe(self) -> str:
        return "\n".join(
            [self.a.describe(), self.b.describe(), "--- nginx error.log ---", self.nginx.error_log[-3000:]]
        )


@pytest.fixture(scope="module")
def rolling(tmp_path_factory, static_root: Path) -> Iterator[RollingCluster]:
    """Own redis, A and B (tests.cluster.settings, --drain-timeout 3) and nginx over them."""
    _require(REDIS_SERVER)
    _require(NGINX)
    if shutil.which("openssl") is None:
        pytest.skip("openssl (for nginx's test certificate) is not installed")
    directory = tmp_path_factory.mktemp("rolling")
    redis = RedisServer(directory / "redis")
    processes: list[Restartable] = []
    nginx = None
    try:
        env = server_env(redis, HookLog(directory / "hooks.log"), static_root)
        processes.append(Restartable("A", env, directory))
        processes.append(Restartable("B", env, directory))
        nginx = Nginx(directory / "nginx", [p.port for p in processes], static_root)
        yield RollingCluster(redis, processes[0], processes[1], nginx)
    finally:
        if nginx is not None:
            nginx.stop()
        for process in processes:
            process.stop()
        redis.stop()


def nginx_statuses(nginx: Nginx, since: int) -> Counter[tuple[str, int]]:
    """(path, status) of the requests nginx logged after offset ``since`` of its access log."""
    found = re.findall(r"^GET (\S+) (\d+) upstream=", nginx.access_log[since:], re.MULTILINE)
    return Counter((path, int(status)) for path, status in found)


# ---------------------------------------------------------------------------
# 1. Protocol level: 20 users as BokehJS + recover.js would behave
# ---------------------------------------------------------------------------


@dataclass
class Close:
    at: float
    code: int | None
    reason: str | None
    frame: bool  # a close frame came from the other end (not a dropped TCP connection)
    after_ack: bool  # the connection had got its ACK


@dataclass
class User:
    index: int
    token: str = ""
    session_ids: list[str] = field(default_factory=list)
    page_statuses: list[int] = field(default_factory=list)
    failed_pages: list[str] = field(default_factory=list)
    failed_handshakes: list[str] = field(default_factory=list)
    closes: list[Close] = field(default_factory=list)
    stalls: list[str] = field(default_factory=list)
    successes: list[float] = field(default_factory=list)
    connects: int = 0
    reconnects: int = 0
    reloads: int = 0
    gave_up: str | None = None


class Users:
    def __init__(self, base_url: str, count: int) -> None:
        self.base_url = base_url
        self.users = [User(i) for i in range(count)]
        self.stop = asyncio.Event()

    async def _page(self, user: User) -> None:
        """GET /echo through nginx as a browser loading (or reloading) the page would."""
        while not self.stop.is_set():
            try:
                status, _, html = await asyncio.to_thread(http_get, f"{self.base_url}/echo")
            except OSError as exc:
                user.failed_pages.append(f"{time.monotonic():.1f}: {exc!r}")
            else:
                user.page_statuses.append(status)
                if status == 200:
                    user.token = token_in_page(html)
                    user.session_ids.append(get_session_id(user.token))
                    return
                user.failed_pages.append(f"{time.monotonic():.1f}: HTTP {status}: {html[:200]!r}")
            await asyncio.sleep(1)  # a person pressing reload

    async def run(self, user: User) -> None:
        await self._page(user)
        attempt = 0  # failed reconnects in a row, as BokehJS counts them
        first = True
        while not self.stop.is_set():
            if not first:
                if attempt >= len(BACKOFF):
                    user.gave_up = f"gave up after {attempt} reconnects: {user.closes[-attempt:]}"
                    return
                await asyncio.sleep(BACKOFF[attempt])
                attempt += 1
                user.reconnects += 1
            first = False
            url = ws_url(self.base_url, "echo")
            try:
                ws = await websockets.connect(
                    url,
                    subprotocols=["bokeh", user.token],
                    max_size=None,
                    open_timeout=TIMEOUT,
                    close_timeout=5,
                    ssl=INSECURE_TLS,
                    origin=self.base_url,
                )
            except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
                # nginx always accepts TCP; a refused or failed handshake through it is a failed request.
                user.failed_handshakes.append(f"{time.monotonic():.1f}: {exc!r}")
                continue
            user.connects += 1
            peer = Peer(ws)
            peer.url = url
            acked = False
            try:
                ack = await peer.recv()
                assert ack.msgtype == "ACK", ack.msgtype
                acked = True
                await peer.pull()
                attempt = 0  # a working connection resets BokehJS's count
                n = 0
                while not self.stop.is_set():
                    n += 1
                    text = f"user {user.index} trip {n}"
                    await peer.send_patch(
                        lambda doc, text=text: setattr(model(doc, "text_input"), "value", text)
                    )
                    assert model(peer.doc, "output").text == text.upper(), model(peer.doc, "output").text
                    user.successes.append(time.monotonic())
                    await asyncio.sleep(THINK_TIME)
                await ws.close()
                return
            except ConnectionClosed:
                user.closes.append(
                    Close(
                        time.monotonic(),
                        ws.close_code,
                        ws.close_reason,
                        ws.protocol.close_rcvd is not None,
                        acked,
                    )
                )
            except (TimeoutError, AssertionError) as exc:
                # A message that never came: no close frame, no answer (a lost message or a hang).
                user.stalls.append(f"{time.monotonic():.1f}: {exc}")
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 5)
                continue
            if ws.close_code == 4010:
                # recover.js: the session is gone; reload the page (a new session, a new token).
                user.reloads += 1
                await self._page(user)
                first, attempt = True, 0

    async def wait_all_working(self, since: float, within: float) -> dict[int, float]:
        """Until every user had a round trip after ``since``; seconds each took (AssertionError if not)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            late = [u.index for u in self.users if not u.successes or u.successes[-1] <= since]
            if not late:
                return {u.index: next(t for t in u.successes if t > since) - since for u in self.users}
            await asyncio.sleep(0.2)
        stuck = [u for u in self.users if not u.successes or u.successes[-1] <= since]
        raise AssertionError(
            f"{len(stuck)} of {len(self.users)} users had no working round trip within {within} s: "
            + "; ".join(
                f"user {u.index}: gave_up={u.gave_up}, closes={u.closes[-3:]}, stalls={u.stalls[-2:]}, "
                f"failed pages={u.failed_pages[-2:]}, handshakes={u.failed_handshakes[-2:]}"
                for u in stuck[:5]
            )
        )


async def test_rolling_restart_with_20_sessions_in_use(rolling: RollingCluster) -> None:
    cluster = rolling
    users = Users(cluster.nginx.url, USERS)
    log_start = len(cluster.nginx.access_log)
    t0 = time.monotonic()
    tasks = [asyncio.create_task(users.run(user)) for user in users.users]
    phases: list[dict] = []
    try:
        async with asyncio.timeout(150):
            await users.wait_all_working(t0, RECOVERY_BOUND)
            initial = {u.index: u.session_ids[0] for u in users.users}
            for process in (cluster.a, cluster.b):
                await asyncio.sleep(1)  # some round trips on the settled cluster first
                old_pid = process.pid
                signalled = time.monotonic()
                await asyncio.to_thread(process.restart)
                answered = time.monotonic()
                took = await users.wait_all_working(answered, RECOVERY_BOUND)
                phases.append(
                    {
                        "process": process.name,
                        "old_pid": old_pid,
                        "exit": process.exits[-1],
                        "restart_s": answered - signalled,
                        "worst_recovery_s": max(took.values()),
                        "at": signalled,
                    }
                )
            await asyncio.sleep(1)
    finally:
        users.stop.set()
        done, pending = await asyncio.wait(tasks, timeout=TIMEOUT + 5)
        for task in pending:
            task.cancel()
    for task in done:
        if task.exception() is not None:
            raise task.exception()
    elapsed = time.monotonic() - t0
    all_users = users.users
    closes = [c for u in all_users for c in u.closes]
    codes = Counter(c.code for c in closes)
    lost = sum(u.reloads for u in all_users)
    reconnects = sum(u.reconnects for u in all_users)
    gaps = [b - a for u in all_users for a, b in zip(u.successes, u.successes[1:], strict=False)]
    statuses = nginx_statuses(cluster.nginx, log_start)
    print(
        f"\nrolling restart of A then B with {USERS} users in {elapsed:.1f} s: "
        f"{sum(len(u.successes) for u in all_users)} round trips; sessions lost (4010 -> reload) {lost}, "
        f"reconnects {reconnects}, reloads {lost}, page GETs {sum(len(u.page_statuses) for u in all_users)}; "
        f"close codes {dict(codes)}; longest pause between round trips {max(gaps):.1f} s "
        f"(median {statistics.median(gaps) * 1000:.0f} ms)\n"
        + "\n".join(
            f"  restart {p['process']} (pid {p['old_pid']}): exit {p['exit'][0]} after {p['exit'][1]:.1f} s, "
            f"answering again after {p['restart_s']:.1f} s, every user working again within "
            f"{p['worst_recovery_s']:.1f} s of that"
            for p in phases
        )
        + f"\n  nginx: {dict(statuses)}"
    )
    problems = cluster.describe()

    # Zero failed requests through nginx: every page GET answered 200, every handshake accepted.
    failed_pages = [(u.index, f) for u in all_users for f in u.failed_pages]
    assert not failed_pages, (
        f"{len(failed_pages)} page GETs through nginx failed: {failed_pages[:10]}\n{problems}"
    )
    failed_handshakes = [(u.index, f) for u in all_users for f in u.failed_handshakes]
    assert not failed_handshakes, (
        f"{len(failed_handshakes)} WebSocket handshakes through nginx failed: {failed_handshakes[:10]}\n{problems}"
    )
    bad_status = {key: n for key, n in statuses.items() if key[1] >= 500}
    assert not bad_status, f"nginx answered {bad_status}\n{problems}"

    # Every close had a close frame with a code and a reason.
    bare = [
        (u.index, c) for u in all_users for c in u.closes if not c.frame or c.code == 1006 or not c.reason
    ]
    assert not bare, f"closes without a close frame, code or reason: {bare[:10]}\n{problems}"
    stalls = [(u.index, s) for u in all_users for s in u.stalls]
    assert not stalls, f"round trips that got neither an answer nor a close: {stalls[:10]}\n{problems}"

    # Nobody got stuck; everybody whose session was lost got a new one by itself.
    assert not [u.gave_up for u in all_users if u.gave_up], [u.gave_up for u in all_users if u.gave_up]
    for user in all_users:
        # Both processes restarted and every user kept its connection open, so every session
        # that existed when a process stopped was destroyed by it: the first one at the latest.
        assert user.reloads >= 1 and len(user.session_ids) == user.reloads + 1, (
            f"user {user.index}: {user.reloads} reloads, sessions {user.session_ids}, closes {user.closes}"
        )
        assert user.session_ids[0] == initial[user.index]
        assert len(set(user.session_ids)) == len(user.session_ids), user.session_ids
        assert user.successes[-1] > phases[-1]["at"], f"user {user.index} did not work after the last restart"
    assert max(gaps) < RECOVERY_BOUND, f"a user had no working round trip for {max(gaps):.1f} s"
    for process in (cluster.a, cluster.b):
        assert [code for code, _ in process.exits] == [0], (
            f"{process.name} exits: {process.exits}\n{problems}"
        )
        assert all(seconds < DRAIN_TIMEOUT + 8 for _, seconds in process.exits), process.exits
    # Every close was one of the drain's: 1001 (destroyed at shutdown), 4010 (gone: reload),
    # or a relay's "reconnecting" codes.
    assert set(codes) <= {1001, 4005, 4006, 4010}, codes


# ---------------------------------------------------------------------------
# 2. Chromium: real pages recover by themselves
# ---------------------------------------------------------------------------

#: Real pages, and at most how many to open to get one whose WebSocket is relayed.
PAGES = 3
MAX_PAGES = 6

#: The page's Bokeh document exists and its first root has a view.
_RENDERED = """() => {
    if (!window.Bokeh || Bokeh.documents.length === 0 || Bokeh.index == null) return false;
    const root = Bokeh.documents[0].roots()[0];
    return root != null && Object.values(Bokeh.index).some((view) => view.model === root);
}"""


def _path(cluster: RollingCluster, session_id: str) -> tuple[str | None, str | None]:
    """(edge, owner) names of a page's WebSocket: edge is None when it was opened on the owner."""
    owner = [
        p.name
        for p in (cluster.a, cluster.b)
        if opened_locally(p, session_id, "echo")
        or f"Relayed WebSocket attached to session {session_id!r}" in p.log
    ]
    edge = [p.name for p in (cluster.a, cluster.b) if relayed(p, session_id, "echo")]
    return (edge[0] if edge else None), (owner[0] if owner else None)


@pytest.mark.browser
@pytest.mark.timeout(170)
def test_browser_pages_recover_from_a_rolling_restart(rolling: RollingCluster) -> None:
    """Pages in Chromium work again after each restart of a rolling restart, by themselves.

    One page at least has its WebSocket relayed (edge -> owner), and the edge restarts first:
    that page keeps its session (on the owner) and must work again on it; the other pages'
    sessions are lost with their process, and recover.js reloads them on 4010.
    """
    from playwright.sync_api import Error as PlaywrightError

    from tests.browser.helpers import PageWatcher, chromium

    cluster = rolling
    with chromium() as browser:
        contexts, watchers, first_ids, paths = [], [], [], []
        try:
            while len(watchers) < PAGES or (len(watchers) < MAX_PAGES and not any(edge for edge, _ in paths)):
                i = len(watchers)
                context = browser.new_context(ignore_https_errors=True)  # one visitor each
                contexts.append(context)
                page = context.new_page()
                page.set_default_timeout(15_000)
                watch = PageWatcher(page)
                response = page.goto(f"{cluster.nginx.url}/echo")
                assert response is not None and response.status == 200, response and response.status
                first_ids.append(get_session_id(token_in_page(response.text())))
                watch.wait_js(_RENDERED, what=f"BokehJS rendering page {i}")
                watch.set("text_input", "value", f"before {i}")
                watch.wait_prop("output", "text", f"BEFORE {i}")
                watchers.append(watch)
                paths.append(_path(cluster, first_ids[-1]))
            relayed_edges = [edge for edge, _ in paths if edge]
            first = cluster.a if not relayed_edges or relayed_edges[0] == "A" else cluster.b
            order = [first, cluster.b if first is cluster.a else cluster.a]

            tries = iter(range(1, 1_000_000))

            def try_page(watch: PageWatcher, i: int) -> str | None:
                """One widget round trip on the page's current document: None if it worked, else why not."""
                try:
                    if not watch.page.evaluate(_RENDERED):
                        return "no rendered Bokeh document"
                    # A text never used before: an output left from an earlier try proves nothing.
                    text = f"page {i} try {next(tries)}"
                    watch.set("text_input", "value", text)
                    watch.page.wait_for_function(
                        f"() => Bokeh.documents[0].get_model_by_name('output').text === {text.upper()!r}",
                        timeout=2000,
                    )
                    return None
                except PlaywrightError as exc:  # a reload in progress, or no answer
                    return str(exc).splitlines()[0]

            phases = []
            for process in order:
                process.restart()
                # All pages in turn until each worked once after this restart, or the bound is over.
                restarted = time.monotonic()
                deadline = restarted + RECOVERY_BOUND
                results: dict[int, str | float] = {}
                while time.monotonic() < deadline:
                    for i, watch in enumerate(watchers):
                        if not isinstance(results.get(i), float):
                            why = try_page(watch, i)
                            results[i] = round(time.monotonic() - restarted, 1) if why is None else why
                    if all(isinstance(r, float) for r in results.values()):
                        break
                    time.sleep(0.5)
                # Still working a moment later (no reload pending from a close just after the try).
                time.sleep(2)
                for i, watch in enumerate(watchers):
                    if isinstance(results.get(i), float) and (why := try_page(watch, i)) is not None:
                        results[i] = f"worked after {results[i]} s, then not: {why}"
                ids = []
                for watch in watchers:
                    try:
                        ids.append(get_session_id(token_in_page(watch.page.content())))
                    except (PlaywrightError, AssertionError):
                        ids.append(None)
                phases.append((process.name, results, ids))

            print(
                f"\nChromium, {len(watchers)} pages (WebSocket edge->owner: {paths}), sessions {first_ids}; "
                "after each restart, seconds until a round trip worked (or why not) and the page's session:\n"
                + "\n".join(f"  restart {name}: {results} sessions {ids}" for name, results, ids in phases)
            )
            failed = {
                f"after restarting {name}": {
                    i: (why, paths[i]) for i, why in results.items() if not isinstance(why, float)
                }
                for name, results, _ in phases
            }
            assert not any(failed.values()), (
                f"pages that did not work again by themselves within {RECOVERY_BOUND} s "
                f"(why, (edge, owner) of the page's first WebSocket): {failed}\n"
                + "\n".join(f"page {i}: {w.report()}" for i, w in enumerate(watchers))
                + "\n"
                + cluster.describe()
            )
            final_ids = phases[-1][2]
            assert not set(final_ids) & set(first_ids), (
                f"every page should be on a new session (both processes restarted): {first_ids} -> {final_ids}"
            )
        finally:
            for context in contexts:
                with contextlib.suppress(Exception):
                    context.close()

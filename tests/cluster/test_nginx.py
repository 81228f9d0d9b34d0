"""Two runbokeh processes behind nginx (docs/deploy/nginx.conf), round robin, no stickiness.

Plain clients load pages as a browser does: GET /<app> through nginx, then the page's token
on a WebSocket through nginx, which may land on the other process (and is then relayed).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time

import pytest

from tests.cluster.helpers import (
    TIMEOUT,
    close_all,
    connect,
    describe,
    fresh_token,
    http_get,
    json_of,
    load_page,
    model,
    opened_locally,
    relayed,
)

pytestmark = pytest.mark.redis

#: Page loads per app, and how many run at once; after this many failures the rest are skipped.
LOADS = 50
CONCURRENCY = 5
GIVE_UP_AFTER = 3


async def _load(cluster, app: str, rng: random.Random) -> dict:
    """One page load through nginx: page, WebSocket with its token, PULL-DOC, and for echo a round trip."""
    start = time.monotonic()
    if rng.random() < 0.5:
        # Browsers ask for the favicon (an upstream request) on some loads and not on others.
        await asyncio.to_thread(http_get, cluster.nginx.url + "/favicon.ico")
    token, session_id = await load_page(cluster.nginx.url, app)
    peer = await connect(cluster.nginx.url, token, app=app)
    try:
        doc = await peer.pull()
        trip = None
        if app == "echo":
            trip_start = time.monotonic()
            await peer.round_trip(f"load {session_id[:6]}")
            trip = time.monotonic() - trip_start
        else:
            assert "seen_path=/hooks" in model(doc, "info").text, model(doc, "info").text
    finally:
        await peer.close()
    return {"app": app, "session_id": session_id, "seconds": time.monotonic() - start, "round_trip": trip}


async def test_page_loads_through_nginx_each_session_created_once(cluster) -> None:
    rng = random.Random(4)
    semaphore = asyncio.Semaphore(CONCURRENCY)
    failures: list[BaseException] = []

    async def one(app: str) -> dict | None:
        async with semaphore:
            if len(failures) >= GIVE_UP_AFTER:
                return None
            try:
                return await asyncio.wait_for(_load(cluster, app, rng), 2 * TIMEOUT)
            except Exception as exc:  # noqa: BLE001 (every kind of failure is reported)
                failures.append(
                    exc
                    if not isinstance(exc, TimeoutError)
                    else AssertionError(f"a {app} page load took more than {2 * TIMEOUT} s")
                )
                return None

    started = time.monotonic()
    apps = ["echo", "hooks"] * LOADS
    results = await asyncio.gather(*(one(app) for app in apps))
    elapsed = time.monotonic() - started
    done = sum(r is not None for r in results)
    assert not failures, (
        f"{len(failures)} page loads failed ({done} of {len(apps)} worked before giving up), "
        f"first: {failures[0]!r}\n"
        f"{describe(cluster.a, cluster.b)}\nnginx:\n{cluster.nginx.error_log[-2000:]}"
    )

    # Each hooks session ran its app exactly once, across both processes.
    hooks_ids = {r["session_id"] for r in results if r["app"] == "hooks"}
    assert len(hooks_ids) == LOADS
    created = cluster.hook_log.created()
    wrong = {sid: created[sid] for sid in hooks_ids if created[sid] != 1}
    assert not wrong, f"on_session_created calls per session (want exactly 1): {wrong}"
    pids = cluster.hook_log.creator_pids(hooks_ids)
    assert set(pids) == {cluster.a.process.pid, cluster.b.process.pid}, (
        f"sessions were created by {dict(pids)}; expected both processes (nginx round robin)"
    )

    # Both paths were taken: WebSockets on the owner and WebSockets relayed from the other process.
    all_ids = [(r["app"], r["session_id"]) for r in results]
    n_relayed = sum(relayed(s, sid, app) for app, sid in all_ids for s in (cluster.a, cluster.b))
    n_local = sum(opened_locally(s, sid, app) for app, sid in all_ids for s in (cluster.a, cluster.b))
    assert n_relayed + n_local == len(all_ids)
    assert n_relayed > 0 and n_local > 0, f"{n_relayed} relayed, {n_local} local WebSockets"

    trips = sorted(r["round_trip"] for r in results if r["round_trip"] is not None)
    loads = sorted(r["seconds"] for r in results)
    print(
        f"\n{len(apps)} page loads through nginx in {elapsed:.1f} s ({CONCURRENCY} at once); "
        f"{n_relayed} relayed, {n_local} local; load median {statistics.median(loads) * 1000:.0f} ms, "
        f"max {loads[-1] * 1000:.0f} ms; echo round trip median {statistics.median(trips) * 1000:.1f} ms, "
        f"max {trips[-1] * 1000:.0f} ms"
    )
    # Relayed messages must not wait for a channel-layer poll timeout (5 s in channels_redis).
    assert loads[-1] < 3, f"slowest page load took {loads[-1]:.1f} s"


def test_http_redirects_to_https(cluster) -> None:
    status, headers, _ = http_get(f"http://127.0.0.1:{cluster.nginx.http_port}/echo")
    assert status == 301
    assert headers["Location"].startswith("https://127.0.0.1")


def test_static_files_come_from_nginx(cluster) -> None:
    status, headers, body = http_get(cluster.nginx.url + "/static/bokeh/js/bokeh.min.js")
    assert status == 200 and len(body) > 100_000
    assert "javascript" in headers["Content-Type"]
    assert headers.get("Cache-Control") == "max-age=604800", headers  # nginx's "expires 7d"
    # nginx writes the access-log line after the response has gone out: wait for it.
    deadline = time.monotonic() + 5
    while True:
        line = [
            entry for entry in cluster.nginx.access_log.splitlines() if "/static/bokeh/js/bokeh.min.js" in entry
        ]
        if line or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert line and line[-1].endswith("upstream=-"), f"static file went upstream: {line}"


def test_https_scheme_reaches_django_round_robin(cluster) -> None:
    """X-Forwarded-Proto + SECURE_PROXY_SSL_HEADER: Django sees https; requests alternate processes."""
    answers = [json_of(http_get(cluster.nginx.url + "/cluster-test/whoami")[2]) for _ in range(6)]
    assert {a["scheme"] for a in answers} == {"https"}, answers
    # Host $http_host: nginx listens on a free port here, and the absolute URL keeps it.
    assert answers[0]["absolute"].startswith(f"https://127.0.0.1:{cluster.nginx.https_port}/"), answers[0]
    assert {a["pid"] for a in answers} == {cluster.a.process.pid, cluster.b.process.pid}, answers


async def test_big_token_passes_nginx(cluster) -> None:
    """A ~12 KB token in Sec-WebSocket-Protocol: nginx's default buffers (8k) would answer 400."""
    padding = random.Random(1).randbytes(5500).hex()  # incompressible: ~12 KB of token
    token = fresh_token(extra_payload={"padding": padding})
    assert 10_000 < len(token) < 14_000, len(token)
    peers = []
    try:
        for i in range(2):  # one of the two may land on the other process: relayed with the big token
            peer = await connect(cluster.nginx.url, token)
            peers.append(peer)
            await peer.round_trip(f"big token {i}")
    finally:
        await close_all(peers)

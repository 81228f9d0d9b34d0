"""metrics.py without a server process: who may scrape, what each event counts, the labels'
bounds, multi-process aggregation, and the answers without prometheus-client installed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from bokeh.core.serialization import Buffer
from bokeh.protocol import Protocol
from prometheus_client.parser import text_string_to_metric_families

from bokehserve_django import metrics
from bokehserve_django.exceptions import (
    AppLoadError,
    ClusterUnavailable,
    NotAccepting,
    ProcessFull,
    SessionRefused,
)
from bokehserve_django.protocol import message_frames
from bokehserve_django.sessions import SessionRequest, SessionRuntime, runtime

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-scrape-token-0123456789"


def value(name: str, **labels: str) -> float:
    """The current value of one sample of this process's registry (0 when absent)."""
    found = metrics._metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def http_scope(client: str | None = "127.0.0.1", path: str = "/metrics", method: str = "GET",
               headers: list[tuple[bytes, bytes]] | None = None) -> dict:
    return {
        "type": "http", "path": path, "method": method, "headers": headers or [],
        "client": None if client is None else [client, 50000],
    }


async def call(scope: dict) -> tuple[int, dict[bytes, bytes], bytes]:
    """Run MetricsMiddleware for ``scope``; (status, headers, body). The inner app answers 299."""
    sent: list[dict] = []

    async def inner(scope, receive, send):
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"inner"})

    async def send(message):
        sent.append(message)

    await metrics.MetricsMiddleware(inner)(scope, None, send)
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


# ---------------------------------------------------------------------------
# Access
# ---------------------------------------------------------------------------


class TestInternalClient:
    @pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1"])
    def test_loopback_is_internal(self, address: str) -> None:
        assert metrics.internal_client(http_scope(address))

    def test_internal_ips_addresses_and_networks(self, settings) -> None:
        settings.INTERNAL_IPS = ["192.0.2.7", "10.1.0.0/16", "not an address"]
        assert metrics.internal_client(http_scope("192.0.2.7"))
        assert metrics.internal_client(http_scope("10.1.200.3"))
        assert not metrics.internal_client(http_scope("192.0.2.8"))
        assert not metrics.internal_client(http_scope("10.2.0.1"))

    @pytest.mark.parametrize("client", ["203.0.113.5", "", "garbage", None])
    def test_others_are_not(self, client: str | None) -> None:
        # None: a Unix socket, where a proxy in front would make every visitor look local.
        assert not metrics.internal_client(http_scope(client))


    @pytest.mark.parametrize(
        ("name", "value"),
        [
            (b"x-forwarded-for", b"203.0.113.5"),
            (b"x-forwarded-for", b"127.0.0.1, 203.0.113.5"),  # a visitor's own claim, then the proxy's entry
            (b"x-real-ip", b"203.0.113.5"),
            (b"forwarded", b'for="203.0.113.5:4711";proto=https'),
            (b"forwarded", b'for="[2001:db8::1]"'),
            (b"forwarded", b"for=unknown"),
        ],
    )
    def test_a_visitor_through_a_proxy_on_this_host_is_not(self, name: bytes, value: bytes) -> None:
        # nginx on the same host: the connection comes from loopback, the visitor from outside.
        assert not metrics.internal_client(http_scope("127.0.0.1", headers=[(name, value)]))

    def test_an_internal_client_through_a_proxy_is(self, settings) -> None:
        settings.INTERNAL_IPS = ["10.1.0.0/16"]
        headers = [(b"x-forwarded-for", b"10.1.2.3"), (b"forwarded", b"for=10.1.2.3:5000")]
        assert metrics.internal_client(http_scope("127.0.0.1", headers=headers))


class TestScrapeAccess:
    async def test_loopback_may_scrape_and_gets_prometheus_text(self) -> None:
        status, headers, body = await call(http_scope("127.0.0.1"))
        assert status == 200
        assert headers[b"content-type"].startswith(b"text/plain; version=")
        assert headers[b"cache-control"] == b"no-store"
        names = {family.name for family in text_string_to_metric_families(body.decode())}
        assert {"bokehserve_sessions", "bokehserve_process_resident_memory_bytes", "bokehserve_processes"} <= names

    async def test_other_addresses_get_403_saying_what_would_be_allowed(self) -> None:
        status, _, body = await call(http_scope("203.0.113.5"))
        assert status == 403
        assert b"INTERNAL_IPS" in body and b"METRICS_BEARER_TOKEN" in body
        assert b"bokehserve_" not in body

    async def test_the_bearer_token_opens_it_from_anywhere(self, settings) -> None:
        settings.BOKEHSERVE = {**settings.BOKEHSERVE, "METRICS_BEARER_TOKEN": TOKEN}
        bearer = [(b"authorization", f"Bearer {TOKEN}".encode())]
        assert (await call(http_scope("203.0.113.5", headers=bearer)))[0] == 200
        wrong = [(b"authorization", f"Bearer {TOKEN}x".encode())]
        assert (await call(http_scope("203.0.113.5", headers=wrong)))[0] == 403
        basic = [(b"authorization", f"Basic {TOKEN}".encode())]
        assert (await call(http_scope("203.0.113.5", headers=basic)))[0] == 403

    async def test_no_token_configured_means_no_token_accepted(self) -> None:
        bearer = [(b"authorization", b"Bearer ")]
        assert (await call(http_scope("203.0.113.5", headers=bearer)))[0] == 403

    async def test_internal_access_can_be_turned_off(self, settings) -> None:
        settings.BOKEHSERVE = {**settings.BOKEHSERVE, "METRICS_ALLOW_INTERNAL": False}
        assert (await call(http_scope("127.0.0.1")))[0] == 403

    @pytest.mark.django_db(transaction=True)
    async def test_staff_users_when_allowed(self, settings) -> None:
        from django.contrib.auth import get_user_model
        from django.test import AsyncClient

        users = get_user_model()._default_manager
        staff = await users.acreate_user("metrics-staff", password="x", is_staff=True)
        plain = await users.acreate_user("metrics-plain", password="x")

        async def cookie_of(user) -> list[tuple[bytes, bytes]]:
            client = AsyncClient()
            await client.aforce_login(user)
            key = client.cookies[settings.SESSION_COOKIE_NAME].value
            return [(b"cookie", f"other=1; {settings.SESSION_COOKIE_NAME}={key}".encode())]

        staff_cookie, plain_cookie = await cookie_of(staff), await cookie_of(plain)
        # Not allowed yet: a staff cookie alone does not open it.
        assert (await call(http_scope("203.0.113.5", headers=staff_cookie)))[0] == 403
        settings.BOKEHSERVE = {**settings.BOKEHSERVE, "METRICS_ALLOW_STAFF": True}
        assert (await call(http_scope("203.0.113.5", headers=staff_cookie)))[0] == 200
        assert (await call(http_scope("203.0.113.5", headers=plain_cookie)))[0] == 403
        assert (await call(http_scope("203.0.113.5")))[0] == 403
        bad_cookie = [(b"cookie", f"{settings.SESSION_COOKIE_NAME}=nonsense".encode())]
        assert (await call(http_scope("203.0.113.5", headers=bad_cookie)))[0] == 403


class TestPath:
    async def test_other_paths_and_websockets_go_to_the_site(self) -> None:
        assert (await call(http_scope(path="/metrics/")))[0] == 299
        assert (await call(http_scope(path="/echo")))[0] == 299
        assert (await call({**http_scope(), "type": "websocket"}))[0] == 299

    async def test_head_has_no_body_and_post_is_refused(self) -> None:
        status, headers, body = await call(http_scope(method="HEAD"))
        assert status == 200 and body == b"" and int(headers[b"content-length"]) > 0
        status, headers, _ = await call(http_scope(method="POST"))
        assert status == 405 and headers[b"allow"] == b"GET, HEAD"

    async def test_renamed_under_the_prefix_or_off(self, settings) -> None:
        settings.BOKEHSERVE = {**settings.BOKEHSERVE, "PREFIX": "bokeh", "METRICS_PATH": "ops/metrics"}
        assert (await call(http_scope(path="/bokeh/ops/metrics")))[0] == 200
        assert (await call(http_scope(path="/metrics")))[0] == 299
        settings.BOKEHSERVE = {**settings.BOKEHSERVE, "METRICS_PATH": None}
        assert (await call(http_scope(path="/metrics")))[0] == 299

    async def test_openmetrics_when_the_scraper_asks_for_it(self) -> None:
        accept = [(b"accept", b"application/openmetrics-text; version=1.0.0,text/plain;q=0.5")]
        status, headers, body = await call(http_scope(headers=accept))
        assert status == 200
        assert headers[b"content-type"].startswith(b"application/openmetrics-text")
        assert body.endswith(b"# EOF\n")


class TestSettings:
    @pytest.mark.parametrize("token", ["short", 12345678901234567890, "has a space in it 123456"])
    def test_a_weak_or_malformed_token_is_refused_without_echoing_it(self, settings, token) -> None:
        from django.core.exceptions import ImproperlyConfigured

        from bokehserve_django.conf import bokeh_settings

        settings.BOKEHSERVE = {**settings.BOKEHSERVE, "METRICS_BEARER_TOKEN": token}
        with pytest.raises(ImproperlyConfigured, match="METRICS_BEARER_TOKEN.*at least 16") as raised:
            bokeh_settings.METRICS_BEARER_TOKEN  # noqa: B018
        assert str(token) not in str(raised.value)

    def test_metrics_path_is_validated_as_the_probe_paths_are(self, settings) -> None:
        from django.core.exceptions import ImproperlyConfigured

        from bokehserve_django.conf import bokeh_settings

        settings.BOKEHSERVE = {**settings.BOKEHSERVE, "METRICS_PATH": "../metrics"}
        with pytest.raises(ImproperlyConfigured, match="METRICS_PATH"):
            bokeh_settings.METRICS_PATH  # noqa: B018


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------


class TestRefusalReasons:
    def test_each_exception_maps_to_one_fixed_reason(self) -> None:
        assert metrics.refusal_reason(ProcessFull("full", retry_after=1)) == "process_full"
        assert metrics.refusal_reason(NotAccepting("stopping", retry_after=1)) == "draining"
        assert metrics.refusal_reason(ClusterUnavailable("no Redis", retry_after=1)) == "redis"
        assert metrics.refusal_reason(AppLoadError("echo", "boom")) == "app_error"
        assert metrics.refusal_reason(SessionRefused("This session belongs to another user.")) == "refused"
        assert metrics.refusal_reason(RuntimeError("anything")) == "error"
        assert metrics.refusal_reason(KeyboardInterrupt()) is None

    @pytest.mark.parametrize(("setting", "reason"), [
        ("MAX_SESSIONS_PER_USER", "user_limit"),
        ("MAX_SESSIONS_PER_ADDRESS", "address_limit"),
        ("MAX_SESSIONS", "process_full"),
    ])
    def test_the_session_caps_refusals_are_told_apart(self, settings, setting: str, reason: str) -> None:
        """Pins the wording of SessionRuntime.check_capacity that refusal_reason reads."""
        settings.BOKEHSERVE = {**settings.BOKEHSERVE, setting: 1}
        user = type("User", (), {"pk": 7, "is_authenticated": True})()
        request = SessionRequest(remote_ip="192.0.2.1", user=user)
        caps = SessionRuntime()
        with caps.reserve_capacity(request), pytest.raises(Exception) as raised:
            caps.check_capacity(SessionRequest(remote_ip="192.0.2.1", user=user))
        assert metrics.refusal_reason(raised.value) == reason
        assert reason in metrics.REFUSAL_REASONS

    def test_session_refused_counts_and_hands_the_exception_back(self) -> None:
        before = value("bokehserve_sessions_refused_total", app="echo", reason="draining")
        exc = NotAccepting("stopping", retry_after=1)
        assert metrics.session_refused("echo", exc) is exc
        assert value("bokehserve_sessions_refused_total", app="echo", reason="draining") == before + 1


class TestMessages:
    def test_sizes_are_the_bytes_of_every_frame(self) -> None:
        protocol = Protocol()
        message = protocol.create("ERROR", "req-1", "d\u00e9j\u00e0 vu \u2603")  # non-ASCII text
        message.add_buffer(Buffer(id="b1", data=memoryview(b"\x00" * 1000)))
        frames = list(message_frames(message))
        wire = sum(len(f.encode("utf-8")) if isinstance(f, str) else len(f) for f in frames)
        assert metrics.message_size(message) == wire

    def test_in_and_out_by_type_with_unknown_types_bounded(self) -> None:
        protocol = Protocol()
        pull = protocol.create("PULL-DOC-REQ")
        before = value("bokehserve_messages_total", direction="in", msgtype="PULL-DOC-REQ")
        bytes_before = value("bokehserve_message_bytes_total", direction="in", msgtype="PULL-DOC-REQ")
        metrics.message_received(pull)
        assert value("bokehserve_messages_total", direction="in", msgtype="PULL-DOC-REQ") == before + 1
        assert value("bokehserve_message_bytes_total", direction="in", msgtype="PULL-DOC-REQ") == (
            bytes_before + metrics.message_size(pull)
        )
        ok = protocol.create("OK", "x")
        ok.msgtype = "SOMETHING-A-CLIENT-INVENTED"
        other_before = value("bokehserve_messages_total", direction="out", msgtype="other")
        metrics.message_sent(ok)
        assert value("bokehserve_messages_total", direction="out", msgtype="other") == other_before + 1


def test_timed_app_code_reports_queue_wait_and_run_time() -> None:
    import time

    count_before = value("bokehserve_app_code_seconds_count", app="unit")
    sum_before = value("bokehserve_app_code_seconds_sum", app="unit")
    queue_sum_before = value("bokehserve_app_code_queue_seconds_sum", app="unit")
    timed = metrics.timed_app_code("unit", lambda seconds: time.sleep(seconds) or "built")
    time.sleep(0.05)  # waiting in the queue
    assert timed(0.05) == "built"
    assert value("bokehserve_app_code_seconds_count", app="unit") == count_before + 1
    assert value("bokehserve_app_code_seconds_sum", app="unit") - sum_before >= 0.05
    assert value("bokehserve_app_code_queue_seconds_sum", app="unit") - queue_sum_before >= 0.05


async def test_a_real_session_moves_the_counters_gauges_and_histograms(settings) -> None:
    """The session runtime in this process: create, refuse over MAX_SESSIONS, destroy."""
    settings.BOKEHSERVE = {**settings.BOKEHSERVE, "MAX_SESSIONS": 1}
    from bokehserve_django.signing import generate_session_id

    created = value("bokehserve_sessions_created_total", app="echo")
    destroyed = value("bokehserve_sessions_destroyed_total", app="echo")
    refused = value("bokehserve_sessions_refused_total", app="echo", reason="process_full")
    built = value("bokehserve_app_code_seconds_count", app="echo")
    runtime.reopen()
    try:
        echo = runtime.app("echo")
        session = await echo.get_or_create(generate_session_id(), SessionRequest(), "", {})
        metrics.sample()
        assert value("bokehserve_sessions", app="echo") == 1
        assert value("bokehserve_sessions_created_total", app="echo") == created + 1
        assert value("bokehserve_app_code_seconds_count", app="echo") == built + 1
        with pytest.raises(ProcessFull):
            await echo.get_or_create(generate_session_id(), SessionRequest(), "", {})
        assert value("bokehserve_sessions_refused_total", app="echo", reason="process_full") == refused + 1
        await echo.discard(session)
        metrics.sample()
        assert value("bokehserve_sessions", app="echo") == 0
        assert value("bokehserve_sessions_destroyed_total", app="echo") == destroyed + 1
    finally:
        await runtime.shutdown()


async def test_placement_refusals_count_as_redis_and_draining(monkeypatch) -> None:
    """New sessions refused before the session layer: Redis unreachable, or the process stopping."""
    from bokehserve_django.cluster import locate, membership
    from bokehserve_django.signing import generate_session_id

    redis = value("bokehserve_sessions_refused_total", app="echo", reason="redis")
    draining = value("bokehserve_sessions_refused_total", app="echo", reason="draining")
    runtime.reopen()
    try:
        runtime.ensure_started()
        with monkeypatch.context() as patched:
            patched.setattr(type(membership), "distributed", property(lambda self: True))
            patched.setattr(membership, "known_down", True)
            with pytest.raises(ClusterUnavailable):
                await locate("echo", generate_session_id(), must_exist=False)
        assert value("bokehserve_sessions_refused_total", app="echo", reason="redis") == redis + 1
        runtime.accepting = False
        with pytest.raises(NotAccepting):
            await locate("echo", generate_session_id(), must_exist=False)
        assert value("bokehserve_sessions_refused_total", app="echo", reason="draining") == draining + 1
    finally:
        runtime.accepting = True
        await runtime.shutdown()


# ---------------------------------------------------------------------------
# Several processes, and no prometheus-client
# ---------------------------------------------------------------------------


def _python(code: str, env: dict[str, str], hide_prometheus: bool = False) -> str:
    prelude = "import sys; sys.modules['prometheus_client'] = None\n" if hide_prometheus else ""
    result = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "tests.settings",
                         **env},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1]


def test_multiprocess_mode_sums_live_gauges_and_keeps_dead_processes_counters(tmp_path: Path) -> None:
    """What a scrape shows when the processes of --num-procs share PROMETHEUS_MULTIPROC_DIR."""
    env = {metrics.MULTIPROC_ENV: str(tmp_path)}
    worker = """
        import os, django; django.setup()
        from bokehserve_django import metrics
        metrics._metrics.sessions.labels("echo").set({sessions})
        for _ in range({sessions}):
            metrics.session_created("echo")
        print(os.getpid())
    """
    first = int(_python(worker.format(sessions=2), env))
    _python(worker.format(sessions=3), env)
    scrape = """
        import json, django; django.setup()
        from prometheus_client.parser import text_string_to_metric_families
        from prometheus_client import multiprocess
        from bokehserve_django import metrics
        def read():
            body, _ = metrics.exposition(None)
            return {s.name: s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples
                    if s.labels.get("app") == "echo" and s.name in ("bokehserve_sessions", "bokehserve_sessions_created_total")}
        both = read()
        multiprocess.mark_process_dead(FIRST)
        print(json.dumps([both, read()]))
    """.replace("FIRST", str(first))
    both, after = json.loads(_python(scrape, env))
    assert both == {"bokehserve_sessions": 5, "bokehserve_sessions_created_total": 5}
    # A dead worker's sessions are gone with it; what it created stays counted.
    assert after == {"bokehserve_sessions": 3, "bokehserve_sessions_created_total": 5}


def test_without_prometheus_client_events_are_no_ops_and_the_path_says_how_to_install() -> None:
    report = _python("""
        import asyncio, json, django
        django.setup()
        from tests.module_imports import failing_imports
        failed = failing_imports()
        from bokehserve_django import metrics
        from bokeh.protocol import Protocol
        message = Protocol().create("PULL-DOC-REQ")
        metrics.session_created("echo"); metrics.session_destroyed("echo"); metrics.message_received(message)
        metrics.message_sent(message); metrics.app_code_timing("echo", 0.1, 0.2); metrics.sample()
        exc = ValueError("x")
        assert metrics.session_refused("echo", exc) is exc
        func = lambda: 1
        assert metrics.timed_app_code("echo", func) is func
        metrics.prepare_workers()
        assert "PROMETHEUS_MULTIPROC_DIR" not in __import__("os").environ
        answers = {}
        async def scrape(client):
            sent = []
            async def send(message): sent.append(message)
            scope = {"type": "http", "path": "/metrics", "method": "GET", "headers": [], "client": [client, 1]}
            await metrics.MetricsMiddleware(None)(scope, None, send)
            answers[client] = [sent[0]["status"], sent[1]["body"].decode()]
        async def main():
            metrics.start_sampling()
            await scrape("127.0.0.1"); await scrape("203.0.113.5")
        asyncio.run(main())
        print(json.dumps({"enabled": metrics.enabled(), "answers": answers, "failed": failed,
                          "hidden": sys.modules["prometheus_client"] is None}))
    """, {}, hide_prometheus=True)
    result = json.loads(report)
    assert result["enabled"] is False and result["hidden"] is True and result["failed"] == {}
    status, body = result["answers"]["127.0.0.1"]
    assert status == 501 and metrics.INSTALL_HINT in body
    assert result["answers"]["203.0.113.5"][0] == 403  # strangers learn nothing, installed or not


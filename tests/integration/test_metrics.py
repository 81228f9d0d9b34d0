"""/metrics of a real runbokeh process: parsed with prometheus_client's parser, moving with
real bokeh.client sessions; and the same server without prometheus-client installed."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from bokeh.client import pull_session
from prometheus_client.parser import text_string_to_metric_families

from bokehserve_django.metrics import INSTALL_HINT
from tests.live import ROOT, LiveServer

#: Short lifetimes, so that closed sessions are reaped within a second or two.
REAPING = ("--unused-session-lifetime", "300", "--check-unused-sessions", "200")
DEADLINE = 20  # seconds any wait below may take at most


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of one scrape."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(base_url: str, condition, what: str) -> dict:
    deadline = time.monotonic() + DEADLINE
    while True:
        samples = scrape(base_url)
        if condition(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {DEADLINE} s; last scrape: "
                                 f"{ {k: v for k, v in samples.items() if 'echo' in str(k)} }")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def reaping_server() -> Iterator[LiveServer]:
    server = LiveServer(*REAPING)
    yield server
    server.stop()


def test_gauges_and_counters_move_with_real_sessions(reaping_server: LiveServer) -> None:
    url = reaping_server.url
    before = scrape(url)
    assert sample(before, "bokehserve_processes") == 1
    assert sample(before, "bokehserve_process_resident_memory_bytes") > 20 * 2**20
    assert not [key for key in before if key[0] == "bokehserve_redis_up"]  # no Redis configured

    sessions = [pull_session(url=f"{url}/echo") for _ in range(2)]
    try:
        opened = wait_for(url, lambda s: sample(s, "bokehserve_sessions", app="echo") == 2,
                          "bokehserve_sessions{app=echo} did not reach 2")
        assert sample(opened, "bokehserve_connections", app="echo") == 2
        for name in ("bokehserve_sessions_created_total", "bokehserve_app_code_seconds_count",
                     "bokehserve_app_code_queue_seconds_count"):
            assert sample(opened, name, app="echo") - sample(before, name, app="echo") == 2, name
        for direction, msgtype in (("in", "PULL-DOC-REQ"), ("out", "ACK"), ("out", "PULL-DOC-REPLY")):
            labels = {"direction": direction, "msgtype": msgtype}
            assert sample(opened, "bokehserve_messages_total", **labels) - sample(
                before, "bokehserve_messages_total", **labels) == 2, labels
        reply_bytes = sample(opened, "bokehserve_message_bytes_total", direction="out", msgtype="PULL-DOC-REPLY")
        assert reply_bytes - sample(before, "bokehserve_message_bytes_total", direction="out",
                                    msgtype="PULL-DOC-REPLY") > 2 * 500  # two whole documents
    finally:
        for session in sessions:
            session.close()

    closed = wait_for(url, lambda s: sample(s, "bokehserve_sessions", app="echo") == 0,
                      "bokehserve_sessions{app=echo} did not fall back to 0 after the reaping")
    assert sample(closed, "bokehserve_connections", app="echo") == 0
    assert sample(closed, "bokehserve_sessions_destroyed_total", app="echo") - sample(
        before, "bokehserve_sessions_destroyed_total", app="echo") == 2
    # The loop-lag task measures once a second from the runtime's start.
    lagged = wait_for(url, lambda s: sample(s, "bokehserve_event_loop_lag_seconds_count") >= 1,
                      "the event loop's lag was not measured")
    assert 0 <= sample(lagged, "bokehserve_event_loop_lag_seconds_sum") < DEADLINE
    # No session id, user or address ever becomes a label.
    ids = {session.id for session in sessions}
    assert not [key for key in closed if ids & {value for _, value in key[1]}]


def test_a_scrape_creates_no_session_and_needs_no_database(reaping_server: LiveServer) -> None:
    first = scrape(reaping_server.url)
    second = scrape(reaping_server.url)
    for app in ("echo", "hooks"):
        assert sample(second, "bokehserve_sessions_created_total", app=app) == sample(
            first, "bokehserve_sessions_created_total", app=app)
    assert "Traceback" not in reaping_server.log


def test_without_prometheus_client_the_path_says_how_to_install_and_sessions_work(tmp_path: Path) -> None:
    # sitecustomize runs at interpreter start-up: in this server, prometheus_client cannot be imported.
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['prometheus_client'] = None\n")
    server = LiveServer(env={"PYTHONPATH": f"{tmp_path}:{ROOT}"})
    try:
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(server.url + "/metrics", timeout=10)
        assert raised.value.code == 501
        assert INSTALL_HINT in raised.value.read().decode()
        with pytest.raises(urllib.error.HTTPError):  # logged once, not per scrape
            urllib.request.urlopen(server.url + "/metrics", timeout=10)
        session = pull_session(url=f"{server.url}/echo")
        try:
            assert session.document.roots
        finally:
            session.close()
    finally:
        server.stop()
    assert "Traceback" not in server.log
    assert server.log.count(f"prometheus-client is not installed: {INSTALL_HINT}") == 1

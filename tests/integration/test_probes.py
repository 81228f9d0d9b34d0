"""Liveness and readiness probes (probes.py): answered before Django, cheap, and honest about draining.

Redis down and back up is tested with real processes in tests/cluster/test_faults_redis.py.
"""

from __future__ import annotations

import http.client
import json

import pytest
from channels.testing import HttpCommunicator

from bokehserve_django.sessions import runtime
from tests.asgi import application
from tests.live import LiveServer

TIMEOUT = 10


def raw_request(server: LiveServer, method: str, path: str, host: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        connection.request(method, path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


async def probe(path: str, method: str = "GET") -> tuple[int, dict[bytes, bytes], bytes]:
    communicator = HttpCommunicator(application, method, path, headers=[(b"host", b"127.0.0.1")])
    response = await communicator.get_response(timeout=TIMEOUT)
    return response["status"], dict(response["headers"]), response["body"]


@pytest.fixture
async def fresh_runtime():
    yield runtime
    runtime.reopen()
    await runtime.shutdown()


# ---------------------------------------------------------------------------
# A real runbokeh process
# ---------------------------------------------------------------------------


def test_liveness_answers_without_cookies_or_caching(server) -> None:
    status, headers, body = raw_request(server, "GET", "/healthz")
    assert status == 200 and json.loads(body) == {"status": "alive"}
    assert headers["content-type"] == "application/json" and headers["cache-control"] == "no-store"
    assert "set-cookie" not in headers and "vary" not in headers  # Django's middleware never ran


def test_readiness_answers_200_while_taking_sessions(server) -> None:
    status, _, body = raw_request(server, "GET", "/readyz")
    assert status == 200 and json.loads(body)["ready"] is True


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_skip_allowed_hosts_as_an_orchestrator_needs(server, path) -> None:
    # Kubernetes probes the pod's address: not a name in ALLOWED_HOSTS, which Django refuses.
    assert raw_request(server, "GET", "/cluster-test-none", host="10.12.0.7:8000")[0] == 400
    status, headers, _ = raw_request(server, "GET", path, host="10.12.0.7:8000")
    assert status == 200 and "set-cookie" not in headers


def test_probes_answer_head_empty_and_refuse_other_methods(server) -> None:
    status, headers, body = raw_request(server, "HEAD", "/readyz")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    status, headers, body = raw_request(server, "POST", "/healthz")
    assert status == 405 and headers["allow"] == "GET, HEAD" and b"GET and HEAD" in body


# ---------------------------------------------------------------------------
# In process: settings and the drain
# ---------------------------------------------------------------------------


async def test_readiness_is_503_with_a_reason_while_draining(fresh_runtime) -> None:
    assert (await probe("/readyz"))[0] == 200
    runtime.stop_accepting()
    status, headers, body = await probe("/readyz")
    assert status == 503 and headers[b"content-type"] == b"application/json"
    assert json.loads(body) == {
        "ready": False,
        "reason": "draining",
        "detail": "This process is stopping and takes no new sessions.",
    }
    assert (await probe("/healthz"))[0] == 200  # still alive: it is finishing its sessions


async def test_readiness_is_503_starting_until_every_on_server_loaded_has_run(fresh_runtime, monkeypatch) -> None:
    """bokeh serve runs these hooks before it listens; here the process listens at once, and is
    not ready until they end (they hold app-code threads, which is not a busy pool)."""
    import asyncio
    import threading

    from bokehserve_django import registry

    release = threading.Event()
    application = registry.registered_apps()["echo"].application
    monkeypatch.setattr(application, "on_server_loaded", lambda server_context: release.wait(TIMEOUT))
    try:
        runtime.ensure_started()  # what the first probe does; then only echo's hook is left
        for _ in range(100):
            if await runtime.loading_apps() == ["echo"]:
                break
            await asyncio.sleep(0.02)
        status, _, body = await probe("/readyz")
        assert status == 503, body
        assert json.loads(body) == {
            "ready": False,
            "reason": "starting",
            "detail": "on_server_loaded still runs for echo.",
        }
        assert (await probe("/healthz"))[0] == 200
    finally:
        release.set()
    for _ in range(100):  # the hook's thread hands its result back to the loop
        if not await runtime.loading_apps():
            break
        await asyncio.sleep(0.02)
    assert (await probe("/readyz"))[0] == 200


async def test_probes_move_under_the_prefix_and_follow_renamed_paths(fresh_runtime, settings) -> None:
    from django.urls import get_resolver

    # bokehserve_django.urls applies PREFIX once, when the URLconf is imported: import it
    # now, so that the 404 below does not import it under "apps" for every later test.
    _ = get_resolver().url_patterns
    settings.BOKEHSERVE = {**settings.BOKEHSERVE, "PREFIX": "apps", "LIVENESS_PATH": "probes/live"}
    assert (await probe("/apps/probes/live"))[0] == 200
    assert (await probe("/apps/readyz"))[0] == 200
    assert (await probe("/healthz"))[0] == 404  # now Django's answer: no such URL
    settings.BOKEHSERVE = {**settings.BOKEHSERVE, "PREFIX": "", "READINESS_PATH": None}
    assert (await probe("/readyz"))[0] == 404


@pytest.mark.parametrize("value", ["", "a b", "../x", 5])
def test_probe_paths_are_validated(settings, value) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from bokehserve_django.conf import bokeh_settings

    settings.BOKEHSERVE = {**settings.BOKEHSERVE, "READINESS_PATH": value}
    with pytest.raises(ImproperlyConfigured, match="READINESS_PATH"):
        _ = bokeh_settings.READINESS_PATH

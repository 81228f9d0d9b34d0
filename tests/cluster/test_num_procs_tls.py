"""runbokeh --num-procs with --ssl-certfile: every worker serves HTTPS and WSS on the shared socket."""

from __future__ import annotations

import pytest

from tests.cluster.conftest import SETTINGS
from tests.integration.test_tls_and_proxy import APP, certificate_for_loopback, get, request_seen, token_of
from tests.live import LiveServer

pytestmark = pytest.mark.redis


async def test_workers_serve_tls_on_the_inherited_socket(redis, tmp_path) -> None:
    import ssl

    cert, key = certificate_for_loopback(tmp_path)
    trusting = ssl.create_default_context(cafile=str(cert))
    # fd: endpoints have no TLS option in daphne's endpoint syntax; BokehDaphneServer wraps them.
    server = LiveServer(str(APP), "--num-procs", "2", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
                        settings=SETTINGS, env={"REDIS_URL": redis.url})
    try:
        wss = f"wss://127.0.0.1:{server.port}/request_info/ws"
        for _ in range(6):
            html = get(f"{server.url}/request_info", context=trusting)
            assert await request_seen(wss, token_of(html), ssl=trusting) == ("https", "127.0.0.1")
    finally:
        server.stop()

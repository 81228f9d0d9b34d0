"""The Redis channel layer settings the project ships (demo_project) work with the installed
redis-py: channels_redis's blocking receive (BZPOPMIN, 5 s) must not outlast the client's
socket_timeout, or every idle WebSocket is closed with 1011 after about 5 s."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis

from tests.live import ROOT

pytestmark = pytest.mark.redis

#: channels_redis.core.RedisChannelLayer.brpop_timeout
BLOCKING_RECEIVE = 5


def _layer_settings(settings_module: str) -> dict:
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:6390/0", "DJANGO_SETTINGS_MODULE": settings_module}
    code = "import json; from django.conf import settings; print(json.dumps(settings.CHANNEL_LAYERS, default=str))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(out.stdout)


def _read_timeout(host) -> float | None:
    """The socket read timeout of the connections redis-py makes for one channels_redis host entry
    (built as channels_redis.utils.create_pool builds its pool)."""
    from channels_redis.utils import create_pool, decode_hosts

    pool = create_pool(decode_hosts([host])[0])
    return pool.connection_class(**pool.connection_kwargs).socket_timeout


@pytest.mark.parametrize("settings_module", ["demo_project.settings", "tests.cluster.settings"])
def test_redis_layer_outlasts_the_blocking_receive(settings_module: str) -> None:
    layer = _layer_settings(settings_module)["default"]
    assert "channels_redis" in layer["BACKEND"], layer
    for host in layer["CONFIG"]["hosts"]:
        timeout = _read_timeout(host)
        assert timeout is None or timeout > BLOCKING_RECEIVE, (
            f"{settings_module}: channels_redis host {host!r} reads with a {timeout} s socket timeout "
            f"(redis-py {redis.__version__}'s default) while its receive blocks {BLOCKING_RECEIVE} s: idle "
            "consumers die with TimeoutError (WebSocket 1011). Use hosts=[{'address': url, 'socket_timeout': "
            "None or > 5}] (channels_redis issue 422, redis-py issue 4091)."
        )

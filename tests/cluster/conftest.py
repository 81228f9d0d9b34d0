"""Fixtures of the cluster tests: one redis-server, two runbokeh processes sharing it (A and B),
and nginx (docs/deploy/nginx.conf) balancing round robin over them, for the whole folder.

Tests that break things (kill a process, restart Redis) start their own processes; the shared
cluster stays healthy for the others. Every process is stopped by its PID at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster.helpers import NGINX, REDIS_SERVER, HookLog, Nginx, RedisServer
from tests.live import ROOT, LiveServer

SETTINGS = "tests.cluster.settings"


def _require(binary: str) -> None:
    if not os.access(binary, os.X_OK):
        pytest.skip(f"{binary} is not installed")


def server_env(redis: RedisServer, hook_log: HookLog, static_root: Path) -> dict[str, str]:
    return {
        "REDIS_URL": redis.url,
        "BOKEHSERVE_TEST_HOOK_LOG": str(hook_log.path),
        "BOKEHSERVE_TEST_STATIC_ROOT": str(static_root),
    }


def start_servers(count: int, env: dict[str, str], *args: str) -> list[LiveServer]:
    """``count`` runbokeh processes with the cluster settings, started side by side."""
    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(LiveServer, *args, settings=SETTINGS, env=env) for _ in range(count)]
        servers, errors = [], []
        for future in futures:
            try:
                servers.append(future.result())
            except (RuntimeError, OSError) as exc:  # stop the ones that did start
                errors.append(exc)
    if errors:
        for server in servers:
            server.stop()
        raise errors[0]
    return servers


@dataclass
class Cluster:
    redis: RedisServer
    a: LiveServer
    b: LiveServer
    nginx: Nginx
    hook_log: HookLog
    static_root: Path

    @property
    def env(self) -> dict[str, str]:
        return server_env(self.redis, self.hook_log, self.static_root)

    def by_pid(self, pid: int) -> LiveServer:
        return {self.a.process.pid: self.a, self.b.process.pid: self.b}[pid]


@pytest.fixture(scope="package")
def cluster_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cluster")


@pytest.fixture(scope="package")
def redis(cluster_dir: Path) -> Iterator[RedisServer]:
    _require(REDIS_SERVER)
    server = RedisServer(cluster_dir / "redis")
    yield server
    server.stop()


@pytest.fixture(scope="package")
def static_root(cluster_dir: Path, redis: RedisServer) -> Path:
    """STATIC_ROOT filled by ``manage.py collectstatic`` (nginx serves it at /static/)."""
    root = cluster_dir / "static"
    env = {**os.environ, "REDIS_URL": redis.url, "BOKEHSERVE_TEST_STATIC_ROOT": str(root)}
    env.pop("BOKEHSERVE_RUN_OVERRIDES", None)
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "collectstatic",
            "--noinput",
            "-v",
            "0",
            "--settings",
            SETTINGS,
        ],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
    )
    assert (root / "bokeh" / "js" / "bokeh.min.js").exists(), sorted(p.name for p in root.iterdir())
    return root


@pytest.fixture(scope="package")
def cluster(cluster_dir: Path, redis: RedisServer, static_root: Path) -> Iterator[Cluster]:
    _require(NGINX)
    if shutil.which("openssl") is None:
        pytest.skip("openssl (for nginx's test certificate) is not installed")
    hook_log = HookLog(cluster_dir / "hooks.log")
    a, b = start_servers(2, server_env(redis, hook_log, static_root))
    try:
        nginx = Nginx(cluster_dir / "nginx", [a.port, b.port], static_root)
    except Exception:
        a.stop()
        b.stop()
        raise
    yield Cluster(redis, a, b, nginx, hook_log, static_root)
    nginx.stop()
    a.stop()
    b.stop()


@pytest.fixture
def cluster_layer(settings, monkeypatch, redis: RedisServer):
    """This test process on the cluster's channel layer (so broadcast.send reaches the servers)."""
    monkeypatch.setenv("REDIS_URL", redis.url)
    from tests.cluster.settings import channel_layers

    settings.CHANNEL_LAYERS = channel_layers(redis.url)
    return settings

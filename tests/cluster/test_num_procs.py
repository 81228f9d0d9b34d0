"""runbokeh --num-procs: N workers on one listening socket serve any session, each app once."""

from __future__ import annotations

import asyncio

import pytest

from tests.cluster.conftest import SETTINGS
from tests.cluster.helpers import HookLog, close_all, connect, load_page
from tests.live import LiveServer

pytestmark = pytest.mark.redis

BATCH = 10  # sessions opened at once
MAX_BATCHES = 10


async def open_and_pull(server_url: str) -> str:
    """Load the hooks app's page, pull its document over the WebSocket; return the session id.

    The page and its WebSocket are separate connections: the kernel may hand them to
    different workers, and then the WebSocket is relayed to the session's owner.
    """
    token, session_id = await load_page(server_url, "hooks")
    peer = await connect(server_url, token, app="hooks")
    try:
        document = await peer.pull()
        assert document.get_model_by_name("info") is not None
    finally:
        await close_all([peer])
    return session_id


async def test_two_workers_on_one_port_share_sessions(redis, cluster_dir, tmp_path) -> None:
    hook_log = HookLog(tmp_path / "hooks.log")
    env = {"REDIS_URL": redis.url, "BOKEHSERVE_TEST_HOOK_LOG": str(hook_log.path)}
    server = LiveServer("--num-procs", "2", settings=SETTINGS, env=env)
    try:
        await hook_log.wait_for_loaded_workers(2, server)
        # Both workers wait on one listening socket, and the kernel may hand a run of
        # sequential connections to the same one. Opening a batch at once keeps one worker
        # busy while the next connection arrives; batches go on, bounded, until both have
        # created sessions.
        session_ids: list[str] = []
        for _ in range(MAX_BATCHES):
            session_ids += await asyncio.gather(*(open_and_pull(server.url) for _ in range(BATCH)))
            if len(hook_log.creator_pids(set(session_ids))) == 2:
                break
        created = hook_log.created()
        assert all(created[sid] == 1 for sid in session_ids), created  # each app ran exactly once
        creators = hook_log.creator_pids(set(session_ids))
        assert len(creators) == 2, creators  # both workers served sessions
    finally:
        server.stop()
    # SIGTERM to runbokeh reaches both workers: each unloads its apps.
    assert len({pid for pid, _ in hook_log.lines("on_server_unloaded")}) == 2, server.log[-3000:]

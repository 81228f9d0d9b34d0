"""The admin's "Live Bokeh sessions" page over two processes sharing Redis.

A staff user asks one process and sees the sessions of both, each with its owner process
and its direct and relayed connections; closing a session that lives in the other process
closes its clients (direct and relayed) with 4012 and the reason, after which its
on_session_destroyed hook has run there. A non-staff user gets 403. A notice sent through
one process reaches the app's pages on both. A process that is frozen is listed as not
answering, after a bounded wait.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from bokeh.util.token import get_session_id

from bokehserve_django.cluster import inventory
from bokehserve_django.protocol import CloseCode
from tests.admin_client import OPERATOR_PERMISSIONS, AdminClient, make_user
from tests.cluster.conftest import start_servers
from tests.cluster.helpers import close_all, connect, describe, fresh_token, relayed

pytestmark = pytest.mark.redis

PAGE = "/admin/bokehserve_django/livesession/"
ACTIONS = PAGE + "actions/"
NOTICE = PAGE + "notice/"


@pytest.fixture
def operator(transactional_db):
    return make_user("operator", staff=True, perms=OPERATOR_PERMISSIONS)


def _row(page: str, session_id: str) -> str:
    marker = f'data-session-id="{session_id}"'
    assert marker in page, f"session {session_id} not listed"
    return page.split(marker, 1)[1].split("</tr>", 1)[0]


async def _wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        await asyncio.sleep(0.05)


async def test_staff_see_both_processes_and_close_a_session_of_the_other(cluster, operator) -> None:
    a, b = cluster.a, cluster.b
    token_a, token_b, token_relayed = fresh_token(), fresh_token(), fresh_token()
    on_a = await connect(a.url, token_a, app="hooks")
    on_b = await connect(b.url, token_b, app="hooks")
    owner_side = await connect(a.url, token_relayed, app="hooks")
    relayed_side = await connect(b.url, token_relayed, app="hooks")
    peers = [on_a, on_b, owner_side, relayed_side]
    sid_a, sid_b, sid_relayed = (get_session_id(t) for t in (token_a, token_b, token_relayed))
    assert relayed(b, sid_relayed, "hooks"), describe(a, b)
    try:
        client = await asyncio.to_thread(AdminClient, a.url, operator)
        status, _, page = await asyncio.to_thread(client.get, PAGE)
        assert status == 200, page[:2000]
        assert f"pid {a.process.pid}" in _row(page, sid_a)
        assert f"pid {b.process.pid}" in _row(page, sid_b)
        relayed_row = _row(page, sid_relayed)
        assert f"pid {a.process.pid}" in relayed_row and "1 / 1" in relayed_row  # one direct, one relayed
        processes = page.split('id="bokehserve-processes"', 1)[1].split("</table>", 1)[0]
        assert f"<td>{a.process.pid}</td>" in processes and f"<td>{b.process.pid}</td>" in processes
        assert "not answering" not in processes

        # Through A, close the session that lives in B.
        status, _, _ = await asyncio.to_thread(
            client.post, ACTIONS, {"action": "close", "session": f"hooks/{sid_b}/", "reason": "Closed for maintenance"}
        )
        assert status == 302
        code, reason, _ = await on_b.close_info(10)
        assert (code, reason) == (CloseCode.CLOSED_BY_ADMIN, "Closed for maintenance")
        await _wait_for(lambda: (b.process.pid, sid_b) in cluster.hook_log.lines("on_session_destroyed"), 10,
                        "on_session_destroyed of the closed session, in B")
        messages = await asyncio.to_thread(client.messages, PAGE)
        assert ("success", f"Closed session {sid_b[:12]}\u2026 of app 'hooks': 1 session "
                           f"(1 in process {b.process.pid} on {_host()}).") in messages, messages

        # Through B, close the session A owns: its direct client and the one relayed through B.
        client_b = await asyncio.to_thread(AdminClient, b.url, operator)
        await asyncio.to_thread(client_b.get, PAGE)
        status, _, _ = await asyncio.to_thread(client_b.post, ACTIONS, {"action": "close", "session": f"hooks/{sid_relayed}/"})
        assert status == 302
        for peer in (owner_side, relayed_side):
            code, reason, _ = await peer.close_info(10)
            assert (code, reason) == (CloseCode.CLOSED_BY_ADMIN, inventory.DEFAULT_CLOSE_REASON)
        await _wait_for(lambda: (a.process.pid, sid_relayed) in cluster.hook_log.lines("on_session_destroyed"), 10,
                        "on_session_destroyed of the relayed session, in A")

        # The session on A was left alone; the closed ones are no longer listed.
        _, _, page = await asyncio.to_thread(client.get, PAGE)
        assert f'data-session-id="{sid_a}"' in page
        assert f'data-session-id="{sid_b}"' not in page and f'data-session-id="{sid_relayed}"' not in page
    finally:
        await close_all(peers)


def test_non_staff_get_403_and_anonymous_visitors_the_login(cluster, transactional_db) -> None:
    plain = make_user("plain", staff=False, perms=OPERATOR_PERMISSIONS)
    for server in (cluster.a, cluster.b):
        assert AdminClient(server.url, plain).get(PAGE)[0] == 403
        status, headers, _ = AdminClient(server.url).get(PAGE)
        assert status == 302 and headers["Location"].startswith("/admin/login/")


async def test_a_notice_reaches_the_pages_of_the_app_on_both_processes(cluster, operator) -> None:
    token = fresh_token()
    peers = [await connect(cluster.a.url, fresh_token(), app="echo"), await connect(cluster.b.url, fresh_token(), app="echo"),
             await connect(cluster.a.url, token, app="echo")]
    peers.append(await connect(cluster.b.url, token, app="echo"))  # relayed to A
    try:
        for peer in peers:
            await peer.pull()
        client = await asyncio.to_thread(AdminClient, cluster.b.url, operator)
        await asyncio.to_thread(client.get, PAGE)
        status, _, _ = await asyncio.to_thread(client.post, NOTICE, {"app": "echo", "text": "Restart at noon"})
        assert status == 302
        for peer in peers:
            patch, _ = await peer.recv_until("PATCH-DOC")
            [event] = patch.content["events"]
            assert (event["kind"], event["msg_type"]) == ("MessageSent", inventory.NOTICE_MESSAGE)
            assert ["text", "Restart at noon"] in event["msg_data"]["entries"]
        messages = await asyncio.to_thread(client.messages, PAGE)
        assert messages[0][0] == "success" and ": 4 connections (" in messages[0][1], messages
    finally:
        await close_all(peers)


async def test_code_in_a_process_serving_no_sessions_asks_the_processes_from_outside(cluster, cluster_layer) -> None:
    """This test process is no member (it serves nothing): it asks on a reply channel of its own,
    as the admin does when served by a WSGI server; one question per process for two sessions."""
    from bokehserve_django.cluster import membership

    # An in-process test before this one (another event loop, the in-memory layer) leaves
    # this process's membership marked started; its loop is gone, as lifecycle._current
    # would find. This process is no member here.
    membership.forget()

    assert not membership.started
    tokens = {cluster.a.process.pid: fresh_token(), cluster.b.process.pid: fresh_token()}
    peers = {pid: await connect(server.url, tokens[pid], app="hooks") for pid, server in
             ((cluster.a.process.pid, cluster.a), (cluster.b.process.pid, cluster.b))}
    try:
        found = await inventory.live_sessions()
        assert {cluster.a.process.pid, cluster.b.process.pid} <= {p.pid for p in found.processes}
        listed = {(s.session_id, s.process.pid) for s in found.sessions}
        for pid, token in tokens.items():
            assert (get_session_id(token), pid) in listed
        outcome = await inventory.close_sessions([("hooks", get_session_id(t)) for t in tokens.values()], "From a script")
        assert outcome.count == 2 and outcome.not_answering == []
        assert sorted(p.pid for p, count in outcome.by_process if count == 1) == sorted(tokens)
        for peer in peers.values():
            code, reason, _ = await peer.close_info(10)
            assert (code, reason) == (CloseCode.CLOSED_BY_ADMIN, "From a script")
    finally:
        await close_all(list(peers.values()))


async def test_a_frozen_process_is_listed_as_not_answering(cluster, operator) -> None:
    [frozen] = await asyncio.to_thread(start_servers, 1, cluster.env)
    try:
        client = await asyncio.to_thread(AdminClient, cluster.a.url, operator)
        # The new process joins the directory with its first heartbeat (a page load starts it).
        await asyncio.to_thread(AdminClient(frozen.url, None).get, "/echo")
        await asyncio.to_thread(_wait_until_listed, client, frozen.process.pid, 10)
        os.kill(frozen.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            status, _, page = await asyncio.to_thread(client.get, PAGE)
            took = time.monotonic() - started
        finally:
            os.kill(frozen.process.pid, signal.SIGCONT)
        assert status == 200
        processes = page.split('id="bokehserve-processes"', 1)[1].split("</table>", 1)[0]
        frozen_row = processes.split(f"<td>{frozen.process.pid}</td>", 1)[1].split("</tr>", 1)[0]
        assert "not answering" in frozen_row
        assert took < inventory.LIST_TIMEOUT + 5, f"the page took {took:.1f} s"
    finally:
        await asyncio.to_thread(frozen.stop)


def _wait_until_listed(client: AdminClient, pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while f"<td>{pid}</td>" not in client.get(PAGE)[2]:
        assert time.monotonic() < deadline, f"process {pid} not listed within {seconds} s"
        time.sleep(0.2)


def _host() -> str:
    import socket

    return socket.gethostname()

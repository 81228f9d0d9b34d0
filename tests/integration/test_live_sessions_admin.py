"""The admin's "Live Bokeh sessions" page on one runbokeh process (in-memory channel layer).

Who may see and act (anonymous: the admin login; non-staff and staff without the permission:
403; view-only staff: no actions), and what each action does to real sessions: the client
gets 4012 and the reason, the app's on_session_destroyed ran; a user's sessions close and
an anonymous one stays; a notice reaches the app's sessions in a PATCH-DOC.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time

import pytest
from bokeh.util.token import get_session_id

from bokehserve_django.cluster import inventory
from bokehserve_django.protocol import CloseCode
from tests.admin_client import OPERATOR_PERMISSIONS, AdminClient, make_user, session_cookie
from tests.bokeh_client import PROTOCOL
from tests.cluster.helpers import HookLog, close_all, connect, fresh_token
from tests.live import LiveServer

PAGE = "/admin/bokehserve_django/livesession/"
ACTIONS = PAGE + "actions/"
NOTICE = PAGE + "notice/"


@pytest.fixture(scope="module")
def hook_log(tmp_path_factory) -> HookLog:
    return HookLog(tmp_path_factory.mktemp("admin") / "hooks.log")


@pytest.fixture(scope="module")
def live(hook_log: HookLog):
    server = LiveServer(env={"BOKEHSERVE_TEST_HOOK_LOG": str(hook_log.path)})
    yield server
    server.stop()


@pytest.fixture
def operator(transactional_db):
    return make_user("operator", staff=True, perms=OPERATOR_PERMISSIONS)


def _wait_for(predicate, seconds: float = 10, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.05)


class TestWhoMaySee:
    def test_anonymous_visitors_are_sent_to_the_admin_login(self, live, transactional_db) -> None:
        status, headers, _ = AdminClient(live.url).get(PAGE)
        assert status == 302
        assert headers["Location"].startswith("/admin/login/?next=/admin/bokehserve_django/livesession/")

    def test_signed_in_users_who_are_not_staff_get_403(self, live, transactional_db) -> None:
        plain = make_user("plain", staff=False, perms=OPERATOR_PERMISSIONS)
        client = AdminClient(live.url, plain)
        assert client.get(PAGE)[0] == 403
        assert client.post(ACTIONS, {"action": "close", "session": "echo/x/"}, csrf=False)[0] == 403

    def test_staff_without_the_permission_get_403(self, live, transactional_db) -> None:
        staff = make_user("nopermission", staff=True)
        assert AdminClient(live.url, staff).get(PAGE)[0] == 403

    async def test_view_only_staff_see_sessions_but_cannot_close_them(self, live, transactional_db, hook_log) -> None:
        viewer = await asyncio.to_thread(make_user, "viewer", staff=True, perms=("view_livesession",))
        token = fresh_token()
        peer = await connect(live.url, token, app="hooks")
        try:
            client = await asyncio.to_thread(AdminClient, live.url, viewer)
            status, _, page = await asyncio.to_thread(client.get, PAGE)
            assert status == 200
            assert f'data-session-id="{get_session_id(token)}"' in page
            assert 'name="action"' not in page and "Send a notice" not in page
            status, _, _ = await asyncio.to_thread(client.post, ACTIONS, {"action": "close", "session": f"hooks/{get_session_id(token)}/"})
            assert status == 403
            await still_served(peer)
        finally:
            await close_all([peer])

    def test_the_admin_index_links_the_page_for_permitted_staff(self, live, operator) -> None:
        status, _, index = AdminClient(live.url, operator).get("/admin/")
        assert status == 200
        assert 'href="/admin/bokehserve_django/livesession/"' in index
        assert "Live Bokeh sessions" in index


class TestActions:
    async def test_close_a_session_its_client_gets_the_reason_and_its_hook_runs(self, live, operator, hook_log) -> None:
        token = fresh_token()
        closing, staying = await connect(live.url, token, app="hooks"), await connect(live.url, fresh_token(), app="hooks")
        try:
            client = await asyncio.to_thread(AdminClient, live.url, operator)
            status, _, page = await asyncio.to_thread(client.get, PAGE)
            assert status == 200
            session_id = get_session_id(token)
            assert f'data-session-id="{session_id}"' in page
            row = page.split(f'data-session-id="{session_id}"', 1)[1].split("</tr>", 1)[0]
            assert "hooks" in row and "anonymous" in row and f"pid {live.process.pid}" in row
            assert "1 / 0" in row  # one direct connection, none relayed

            status, headers, _ = await asyncio.to_thread(
                client.post, ACTIONS, {"action": "close", "session": f"hooks/{session_id}/", "reason": "Maintenance at 17:00"}
            )
            assert status == 302 and headers["Location"] == PAGE
            code, reason, _ = await closing.close_info(10)
            assert (code, reason) == (CloseCode.CLOSED_BY_ADMIN, "Maintenance at 17:00")
            await asyncio.to_thread(_wait_for, lambda: session_id in hook_log.created("on_session_destroyed"),
                                    10, "on_session_destroyed of the closed session")
            messages = await asyncio.to_thread(client.messages, PAGE)
            assert ("success", f"Closed session {session_id[:12]}\u2026 of app 'hooks': 1 session "
                               f"(1 in process {live.process.pid} on {_host()}).") in messages
            await still_served(staying)  # the other session was left alone
        finally:
            await close_all([closing, staying])

    async def test_idle_counts_from_the_last_client_change_and_unused_from_the_last_client_leaving(self, live, operator) -> None:
        token = fresh_token()
        peer = await connect(live.url, token, app="echo")
        session_id = get_session_id(token)
        try:
            await peer.pull()
            await asyncio.sleep(2.2)
            await peer.round_trip("touch")  # a PATCH-DOC from the client: idle starts again
            client = await asyncio.to_thread(AdminClient, live.url, operator)
            _, _, page = await asyncio.to_thread(client.get, PAGE)
            cells = re.findall(r"<td>(.*?)</td>", page.split(f'data-session-id="{session_id}"', 1)[1].split("</tr>", 1)[0])
            age, idle, connections = (int(cells[-3].split()[0]), int(cells[-2].split()[0]), cells[-1])
            assert age >= 2 and idle < age, cells
            assert connections == "1 / 0"
        finally:
            await close_all([peer])

        def unused_shown() -> bool:
            _, _, page = client.get(PAGE)
            row = page.split(f'data-session-id="{session_id}"', 1)[1].split("</tr>", 1)[0]
            return re.search(r"<td>0 / 0 \(none for \d+ s\)</td>", row) is not None

        await asyncio.to_thread(_wait_for, unused_shown, 5, "the session shown without connections")

    async def test_close_every_session_of_a_user_leaves_them_signed_in(self, live, operator) -> None:
        bob = await asyncio.to_thread(make_user, "bob", staff=False)
        cookie = await asyncio.to_thread(session_cookie, bob)
        headers = {"Cookie": f"sessionid={cookie}"}
        bobs = [await connect(live.url, fresh_token(), app="echo", additional_headers=headers) for _ in range(2)]
        anonymous = await connect(live.url, fresh_token(), app="echo")
        try:
            client = await asyncio.to_thread(AdminClient, live.url, operator)
            status, _, page = await asyncio.to_thread(client.get, f"{PAGE}?user={bob.pk}")
            assert status == 200
            assert page.count('value="echo/') == 2 and ">bob</a>" in page
            one = page.split('name="session" value="', 1)[1].split('"', 1)[0]
            status, _, _ = await asyncio.to_thread(client.post, ACTIONS, {"action": "close_user", "session": one})
            assert status == 302
            for peer in bobs:
                code, reason, _ = await peer.close_info(10)
                assert (code, reason) == (CloseCode.CLOSED_BY_ADMIN, inventory.DEFAULT_CLOSE_REASON)
            await anonymous.round_trip("still here")
            # Still signed in: a new page of bob's is his.
            again = await connect(live.url, fresh_token(), app="echo", additional_headers=headers)
            await close_all([again])
            assert (await asyncio.to_thread(client.messages, PAGE))[0][0] == "success"
        finally:
            await close_all([*bobs, anonymous])

    async def test_a_notice_reaches_the_sessions_of_that_app_only(self, live, operator) -> None:
        echo, other = await connect(live.url, fresh_token(), app="echo"), await connect(live.url, fresh_token(), app="hooks")
        try:
            await echo.pull()
            client = await asyncio.to_thread(AdminClient, live.url, operator)
            await asyncio.to_thread(client.get, PAGE)
            status, _, _ = await asyncio.to_thread(client.post, NOTICE, {"app": "echo", "text": "Back <b>soon</b>"})
            assert status == 302
            patch, _ = await echo.recv_until("PATCH-DOC")
            events = patch.content["events"]
            assert events == [{"kind": "MessageSent", "msg_type": inventory.NOTICE_MESSAGE,
                               "msg_data": {"type": "map", "entries": [["text", "Back <b>soon</b>"], ["app", "echo"]]}}], events
            with pytest.raises(TimeoutError):
                await other.recv(1)
            messages = await asyncio.to_thread(client.messages, PAGE)
            assert messages[0] == ("success", f"Sent the notice to the open pages of app 'echo': 1 connection "
                                              f"(1 in process {live.process.pid} on {_host()}).")
        finally:
            await close_all([echo, other])

    async def test_bad_input_is_refused_with_a_reason_and_closes_nothing(self, live, operator) -> None:
        token = fresh_token()
        peer = await connect(live.url, token, app="echo")
        session_id = get_session_id(token)
        try:
            client = await asyncio.to_thread(AdminClient, live.url, operator)
            await asyncio.to_thread(client.get, PAGE)
            cases = [
                (ACTIONS, {"action": "close", "session": f"echo/{session_id}/", "reason": "x" * 121},
                 ("error", "Nothing was closed. The reason is 121 bytes long; a WebSocket close reason holds at most 120 (UTF-8). Shorten it.")),
                (ACTIONS, {"action": "close"}, ("warning", "No session selected: tick the sessions to act on first.")),
                (ACTIONS, {"action": "explode", "session": f"echo/{session_id}/"}, ("error", "Unknown action 'explode': choose one in the list.")),
                (NOTICE, {"app": "echo", "text": "   "}, ("error", "No notice sent. The notice is empty; type the text the pages should show.")),
                (NOTICE, {"app": "nope", "text": "hi"}, ("error", "No notice sent: 'nope' is not a registered app.")),
            ]
            for path, data, expected in cases:
                status, _, _ = await asyncio.to_thread(client.post, path, data)
                assert status == 302, (path, data)
                assert expected in await asyncio.to_thread(client.messages, PAGE)
            # Without the CSRF token: refused by Django's CSRF check.
            assert (await asyncio.to_thread(client.post, ACTIONS, {"action": "close", "session": f"echo/{session_id}/"}, False))[0] == 403
            assert (await asyncio.to_thread(client.get, ACTIONS))[0] == 405
            await peer.round_trip("alive")
        finally:
            await close_all([peer])


def _host() -> str:
    return socket.gethostname()


async def still_served(peer) -> None:
    """The session answers a SERVER-INFO-REQ (whatever its app)."""
    await peer.send(PROTOCOL.create("SERVER-INFO-REQ"))
    await peer.recv_until("SERVER-INFO-REPLY")

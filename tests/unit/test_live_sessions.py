"""The admin's live-sessions parts that need no server: durations, command validation, and how
cluster.inventory gathers answers (routed by reply id; a silent process is listed, not waited on)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bokehserve_django.admin import human_duration
from bokehserve_django.cluster import inventory


class TestHumanDuration:
    @pytest.mark.parametrize(("seconds", "text"), [
        (None, "\u2014"), (-3, "0 s"), (0.4, "0 s"), (59.9, "59 s"), (60, "1 min"), (3599, "59 min"),
        (3600, "1 h 00 min"), (3 * 3600 + 5 * 60, "3 h 05 min"), (86399, "23 h 59 min"),
        (2 * 86400 + 4 * 3600 + 59, "2 d 4 h"),
    ])
    def test_reads_as_people_say_it(self, seconds: float | None, text: str) -> None:
        assert human_duration(seconds) == text


class TestValidation:
    def test_a_blank_reason_becomes_the_default(self) -> None:
        assert inventory.clean_reason("  ") == inventory.DEFAULT_CLOSE_REASON
        assert inventory.clean_reason(None) == inventory.DEFAULT_CLOSE_REASON
        assert inventory.clean_reason(" Upgrade ") == "Upgrade"

    def test_a_reason_longer_than_a_close_frame_holds_is_refused_in_bytes(self) -> None:
        assert inventory.clean_reason("é" * 60) == "é" * 60  # 120 bytes: fits
        with pytest.raises(inventory.InvalidCommand, match="is 122 bytes long; .* at most 120"):
            inventory.clean_reason("é" * 61)

    def test_a_notice_must_have_text_within_the_limit(self) -> None:
        with pytest.raises(inventory.InvalidCommand, match="The notice is empty"):
            inventory.clean_notice(" \n ")
        with pytest.raises(inventory.InvalidCommand, match="501 characters long; the limit is 500"):
            inventory.clean_notice("x" * 501)
        assert inventory.clean_notice(" <b>hi</b> ") == "<b>hi</b>"

    async def test_commands_name_what_they_act_on(self) -> None:
        with pytest.raises(inventory.InvalidCommand, match="No session id given"):
            await inventory.close_session("echo", " ")
        with pytest.raises(inventory.InvalidCommand, match="No session given"):
            await inventory.close_sessions([])
        with pytest.raises(inventory.InvalidCommand, match="No user given"):
            await inventory.close_user_sessions(None)
        with pytest.raises(inventory.InvalidCommand, match="No user given"):
            await inventory.close_users_sessions([])

    async def test_an_unknown_command_is_refused(self) -> None:
        with pytest.raises(inventory.InvalidCommand, match="Unknown inventory command 'explode'"):
            await inventory.carry_out({"command": "explode"})


class FakeMembership:
    """Three processes in the directory: this one, one that answers, one that never does."""

    def __init__(self, connected: bool = True) -> None:
        self.process_channel = "specific.me!1"
        self.started = True
        self.distributed = True
        self.connected = connected
        self.draining = False
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def process_stats(self) -> list[dict[str, Any]]:
        return [
            {"channel": self.process_channel, "pid": 1, "host": "h1"},
            {"channel": "specific.peer!2", "pid": 2, "host": "h2"},
            {"channel": "specific.silent!3", "pid": 3, "host": "h3", "draining": True},
        ]

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        self.sent.append((channel, message))
        if channel == "specific.peer!2":
            # The peer answers on the asker's channel, after a moment, through the listener.
            facts = {"app": "echo", "session_id": "s2", "user_pk": "7", "user_name": "bob", "age_seconds": 30.0,
                     "idle_seconds": 4.0, "unused_seconds": None, "direct": 0, "relayed": 1}
            answer = {"type": inventory.ANSWER, "reply": message["reply"], "result": {"sessions": [facts]}}
            asyncio.get_running_loop().call_later(0.05, asyncio.ensure_future, inventory._on_answer(answer))


@pytest.fixture
def fake_cluster(monkeypatch) -> FakeMembership:
    fake = FakeMembership()
    monkeypatch.setattr(inventory, "membership", fake)
    monkeypatch.setattr(inventory, "LIST_TIMEOUT", 0.5)

    async def local(command: dict[str, Any]) -> dict[str, Any]:
        facts = {"app": "echo", "session_id": "s1", "user_pk": None, "user_name": None, "age_seconds": 90.0,
                 "idle_seconds": 90.0, "unused_seconds": 12.0, "direct": 0, "relayed": 0}
        return {"sessions": [facts]}

    monkeypatch.setattr(inventory, "carry_out", local)
    return fake


class TestGathering:
    async def test_answers_come_back_by_reply_id_and_a_silent_process_is_listed(self, fake_cluster) -> None:
        found = await asyncio.wait_for(inventory.live_sessions(), 5)
        assert [(s.session_id, s.process.pid, s.user_name, s.relayed) for s in found.sessions] == [
            ("s1", 1, None, 0), ("s2", 2, "bob", 1),  # oldest first
        ]
        assert [p.pid for p in found.not_answering] == [3]
        assert [(p.pid, p.draining) for p in found.processes] == [(1, False), (2, False), (3, True)]
        assert found.incomplete is None
        asked = [(channel, m["type"], m["command"]) for channel, m in fake_cluster.sent]
        assert asked == [("specific.peer!2", inventory.ASK, {"command": "list"}),
                         ("specific.silent!3", inventory.ASK, {"command": "list"})]
        assert all(m["reply"].startswith("specific.me!1|") for _, m in fake_cluster.sent)
        assert inventory._waiting == {}  # nothing left waiting after the timeout

    async def test_a_late_answer_to_a_question_given_up_is_ignored(self, fake_cluster) -> None:
        await inventory._on_answer({"type": inventory.ANSWER, "reply": "specific.me!1|gone", "result": {}})
        assert inventory._waiting == {}

    async def test_without_redis_only_this_process_is_asked_and_the_page_says_so(self, fake_cluster) -> None:
        fake_cluster.connected = False

        async def only_me() -> list[dict[str, Any]]:
            return [{"channel": fake_cluster.process_channel, "pid": 1, "host": "h1"}]

        fake_cluster.process_stats = only_me
        found = await inventory.live_sessions()
        assert [s.session_id for s in found.sessions] == ["s1"]
        assert fake_cluster.sent == []
        assert found.incomplete == "Redis is unreachable: only the sessions of this process are shown or acted on."


async def test_a_process_that_serves_no_sessions_on_the_in_memory_layer_lists_none(monkeypatch) -> None:
    """Not a member (no session opened yet) and no Redis: nothing to ask, nothing held here; the page says why."""
    monkeypatch.setattr(inventory.membership, "started", False)
    found = await inventory.live_sessions()
    assert (found.sessions, found.not_answering) == ([], [])
    assert found.incomplete == ("This process serves no Bokeh sessions, and without channels_redis it cannot "
                                "reach the processes that do (see docs/cluster.md).")

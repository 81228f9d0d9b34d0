"""Lists the live sessions of every process, and carries an operator's commands to the processes.

The Django admin's "Live Bokeh sessions" page uses this (see admin.py and docs/operations.md):

- ``live_sessions()``: every process's sessions, with app, user, age, idle time, connections;
- ``close_session(app, session_id, reason)``: the process holding it closes it (clients get
  4012 and the reason, on_session_destroyed runs);
- ``close_user_sessions(user_pk, reason)``: the same for every session of one user, who stays
  signed in;
- ``send_notice(app, text)``: every open page of the app shows the text.

The facts come from the processes themselves, over the channel layer: each live process (as
listed in the process directory the heartbeats write, ``PROCESSES_KEY``) is asked on its own
channel and answers on the asker's. A process that does not answer within the timeout is
reported as not answering, never waited on. With the in-memory channel layer there is one
process, which answers itself. Channel-layer message types (``bokehserve.inventory.*``) are
defined here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..protocol import CloseCode
from .membership import ALIVE_TTL, PROCESSES_KEY, REDIS_TIMEOUT, async_client, membership, redis_host

__all__ = (
    "DEFAULT_CLOSE_REASON",
    "NOTICE_MESSAGE",
    "NOTICE_TOPIC",
    "InvalidCommand",
    "Inventory",
    "Outcome",
    "ProcessInfo",
    "SessionFacts",
    "close_session",
    "close_user_sessions",
    "live_sessions",
    "send_notice",
)

logger = logging.getLogger(__name__)

ASK = "bokehserve.inventory.ask"        # asker -> a process: a command and where to answer
ANSWER = "bokehserve.inventory.answer"  # that process -> the asker: the command's result

#: Seconds a process has to list its sessions; slower ones are listed as not answering.
LIST_TIMEOUT = 3.0
#: Seconds a process has to close sessions or deliver a notice (closing runs the app's
#: on_session_destroyed hooks, which may take a while).
COMMAND_TIMEOUT = 10.0

#: The Bokeh document message a notice travels in (a MessageSent event in a PATCH-DOC);
#: recover.js shows it, and BokehJS code can listen with ``doc.on_message(NOTICE_MESSAGE, ...)``.
NOTICE_MESSAGE = "bokehserve_notice"
#: The broadcast topic on which app code hears notices: ``subscribe(curdoc(), NOTICE_TOPIC, cb)``.
NOTICE_TOPIC = "bokehserve.notice"

DEFAULT_CLOSE_REASON = "Closed by an administrator"
#: A WebSocket close reason may hold 123 bytes of UTF-8 (RFC 6455); keep a margin.
MAX_REASON_BYTES = 120
MAX_NOTICE_LENGTH = 500


class InvalidCommand(ValueError):
    """Raised when an operator's command is incomplete or out of bounds; the text says which."""


@dataclass(frozen=True)
class ProcessInfo:
    """One process of the cluster, as the process directory lists it."""

    channel: str
    pid: int
    host: str
    draining: bool = False

    @classmethod
    def of(cls, info: dict[str, Any]) -> ProcessInfo:
        return cls(str(info.get("channel") or ""), int(info.get("pid") or 0), str(info.get("host") or "?"),
                   bool(info.get("draining", False)))


@dataclass(frozen=True)
class SessionFacts:
    """One live session, as its owner process describes it."""

    app: str
    session_id: str
    process: ProcessInfo
    #: The Django user's primary key and username; None for anonymous sessions.
    user_pk: str | None
    user_name: str | None
    age_seconds: float
    #: Seconds since a client last changed the document (or since creation).
    idle_seconds: float
    #: Seconds since the last client left, while no client is connected (else None):
    #: the session is reaped once this passes UNUSED_SESSION_LIFETIME.
    unused_seconds: float | None
    #: Clients connected to this process directly, and relayed from other processes.
    direct: int
    relayed: int


@dataclass
class Inventory:
    """The sessions of every process that answered, and the processes that did not."""

    sessions: list[SessionFacts] = field(default_factory=list)
    processes: list[ProcessInfo] = field(default_factory=list)
    not_answering: list[ProcessInfo] = field(default_factory=list)
    #: Why the list may be missing processes entirely (Redis unreachable), or None.
    incomplete: str | None = None


@dataclass
class Outcome:
    """What a command did: how many sessions it closed or reached, and who did not answer."""

    count: int = 0
    #: (process, count) for the processes where it did something.
    by_process: list[tuple[ProcessInfo, int]] = field(default_factory=list)
    not_answering: list[ProcessInfo] = field(default_factory=list)
    incomplete: str | None = None


# ---------------------------------------------------------------------------
# Validation of commands
# ---------------------------------------------------------------------------


def clean_reason(reason: str | None) -> str:
    """The close reason clients will read: the default if blank; InvalidCommand if too long."""
    reason = (reason or "").strip() or DEFAULT_CLOSE_REASON
    if len(reason.encode()) > MAX_REASON_BYTES:
        raise InvalidCommand(
            f"The reason is {len(reason.encode())} bytes long; a WebSocket close reason holds at most "
            f"{MAX_REASON_BYTES} (UTF-8). Shorten it."
        )
    return reason


def clean_notice(text: str | None) -> str:
    text = (text or "").strip()
    if not text:
        raise InvalidCommand("The notice is empty; type the text the pages should show.")
    if len(text) > MAX_NOTICE_LENGTH:
        raise InvalidCommand(f"The notice is {len(text)} characters long; the limit is {MAX_NOTICE_LENGTH}.")
    return text


def _require(value: str | None, what: str) -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidCommand(f"No {what} given.")
    return value


# ---------------------------------------------------------------------------
# Public API (runs on the server's event loop)
# ---------------------------------------------------------------------------


async def live_sessions() -> Inventory:
    """Every live session of the cluster, sorted by app, then oldest first."""
    answers = await _ask_every_process({"command": "list"}, LIST_TIMEOUT)
    inventory = Inventory(processes=[p for p, _ in answers.results] + answers.silent,
                          not_answering=answers.silent, incomplete=answers.incomplete)
    for process, result in answers.results:
        for facts in result.get("sessions", ()):
            inventory.sessions.append(SessionFacts(process=process, **facts))
    inventory.sessions.sort(key=lambda s: (s.app, -s.age_seconds, s.session_id))
    inventory.processes.sort(key=lambda p: (p.host, p.pid))
    return inventory


async def close_session(app: str, session_id: str, reason: str | None = None) -> Outcome:
    """Close one session wherever it lives: its clients get 4012 and ``reason``, its hooks run."""
    return await close_sessions([(app, session_id)], reason)


async def close_sessions(sessions: list[tuple[str, str]], reason: str | None = None) -> Outcome:
    """Close these (app, session id) sessions wherever they live: one question per process."""
    pairs = [[_require(app, "app"), _require(session_id, "session id")] for app, session_id in sessions]
    if not pairs:
        raise InvalidCommand("No session given.")
    command = {"command": "close", "sessions": pairs, "reason": clean_reason(reason)}
    return _outcome(await _ask_every_process(command, COMMAND_TIMEOUT))


async def close_user_sessions(user_pk: Any, reason: str | None = None) -> Outcome:
    """Close every session of one Django user, in every process. The user stays signed in."""
    return await close_users_sessions([user_pk], reason)


async def close_users_sessions(user_pks: list[Any], reason: str | None = None) -> Outcome:
    """Close every session of these Django users, in every process. They stay signed in."""
    users = [_require(None if pk is None else str(pk), "user") for pk in user_pks]
    if not users:
        raise InvalidCommand("No user given.")
    command = {"command": "close_user", "users": users, "reason": clean_reason(reason)}
    return _outcome(await _ask_every_process(command, COMMAND_TIMEOUT))


async def send_notice(app: str, text: str) -> Outcome:
    """Show ``text`` on every open page of ``app`` (and tell its NOTICE_TOPIC subscribers).

    The outcome counts the connections (pages, clients) the notice went to.
    """
    command = {"command": "notice", "app": _require(app, "app"), "text": clean_notice(text)}
    return _outcome(await _ask_every_process(command, COMMAND_TIMEOUT))


def _outcome(answers: _Answers) -> Outcome:
    outcome = Outcome(not_answering=answers.silent, incomplete=answers.incomplete)
    for process, result in answers.results:
        count = int(result.get("count", 0))
        if count:
            outcome.by_process.append((process, count))
            outcome.count += count
    return outcome


# ---------------------------------------------------------------------------
# What one process does (the answering side)
# ---------------------------------------------------------------------------


async def carry_out(command: dict[str, Any]) -> dict[str, Any]:
    """Run ``command`` on this process's sessions; its msgpack-safe result."""
    kind = command.get("command")
    if kind == "list":
        return {"sessions": local_sessions()}
    if kind == "close":
        wanted = {(app, session_id) for app, session_id in command["sessions"]}
        return {"count": await _close_here(lambda app, s: (app, s.id) in wanted, command["reason"])}
    if kind == "close_user":
        users = set(command["users"])
        return {"count": await _close_here(lambda app, s: _user_pk(s) in users, command["reason"])}
    if kind == "notice":
        return {"count": await _notice_here(command["app"], command["text"])}
    raise InvalidCommand(f"Unknown inventory command {kind!r}")


def local_sessions() -> list[dict[str, Any]]:
    """The facts of this process's live sessions (without the process, which the asker adds)."""
    from ..sessions import runtime
    from .relay import owner_relays

    relayed = owner_relays.relayed_per_session()
    now = time.monotonic()
    facts = []
    for name, app_sessions in runtime.apps.items():
        for session in app_sessions.sessions:
            connections = session.connection_count
            from_others = min(relayed.get((name, session.id), 0), connections)
            user = session.context.user
            signed_in = bool(getattr(user, "is_authenticated", False))
            facts.append({
                "app": name,
                "session_id": session.id,
                "user_pk": str(user.pk) if signed_in else None,
                "user_name": str(user.get_username()) if signed_in else None,
                "age_seconds": round(now - session.created_at, 1),
                "idle_seconds": round(now - getattr(session, "last_client_change", session.created_at), 1),
                "unused_seconds": None if connections else round(session.milliseconds_since_last_unsubscribe / 1000, 1),
                "direct": connections - from_others,
                "relayed": from_others,
            })
    return facts


def _user_pk(session: Any) -> str | None:
    user = session.context.user
    return str(user.pk) if getattr(user, "is_authenticated", False) else None


async def _close_here(matches: Any, reason: str) -> int:
    from ..sessions import runtime

    closed = 0
    for name, app_sessions in runtime.apps.items():
        for session in app_sessions.sessions:
            if not matches(name, session):
                continue
            logger.info("Closing session %r of app %r at an administrator's request", session.id, name)
            if await app_sessions.discard(session, reason=reason, close_code=CloseCode.CLOSED_BY_ADMIN):
                closed += 1
    return closed


async def _notice_here(app: str, text: str) -> int:
    from bokeh.document.events import MessageSentEvent

    from ..sessions import runtime
    from .broadcast import deliver

    app_sessions = runtime.apps.get(app)
    if app_sessions is None:
        return 0
    payload = {"text": text, "app": app}
    reached = 0
    for session in app_sessions.sessions:
        if not session.connection_count:
            continue  # nobody would see it: a client that reattaches pulls the document afresh
        document = session.document
        try:
            # Under the document lock, as any change: bokeh sends the event to every
            # connection of the session (relayed ones included) in one PATCH-DOC.
            await session.with_document_locked(
                document.callbacks.trigger_on_change, MessageSentEvent(document, NOTICE_MESSAGE, payload)
            )
        except Exception:
            logger.error("Could not send a notice to session %r of app %r", session.id, app, exc_info=True)
            continue
        reached += session.connection_count
    await deliver({"topic": NOTICE_TOPIC, "payload": payload, "app": app})
    return reached


# ---------------------------------------------------------------------------
# Asking the processes (the asking side)
# ---------------------------------------------------------------------------


@dataclass
class _Answers:
    results: list[tuple[ProcessInfo, dict[str, Any]]] = field(default_factory=list)
    silent: list[ProcessInfo] = field(default_factory=list)
    incomplete: str | None = None


#: Reply id -> the future its answer resolves, for the questions this process is waiting on.
_waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}


def _this_process() -> ProcessInfo:
    return ProcessInfo(membership.process_channel or "", os.getpid(), socket.gethostname(), membership.draining)


async def _ask_every_process(command: dict[str, Any], answer_within: float) -> _Answers:
    """The result of every live process, each within ``answer_within`` seconds.

    A process serving Bokeh sessions answers for itself at once and hears the others' answers
    on its own channel. Any other process (the admin served by a WSGI server, say, or a
    Bokeh process before its first session) holds no sessions: it only asks, on a channel
    of its own for the occasion.
    """
    if membership.started:
        return await _ask_as_member(command, answer_within)
    return await _ask_from_outside(command, answer_within)


async def _ask_as_member(command: dict[str, Any], answer_within: float) -> _Answers:
    answers = _Answers()
    me, peers = _this_process(), []
    if membership.distributed:
        if not membership.connected:
            answers.incomplete = "Redis is unreachable: only the sessions of this process are shown or acted on."
        for info in await membership.process_stats():
            process = ProcessInfo.of(info)
            if process.channel == membership.process_channel:
                me = process
            elif process.channel:
                peers.append(process)
    asked = {process: asyncio.ensure_future(_ask(process, command, answer_within)) for process in peers}
    answers.results.append((me, await carry_out(command)))
    for process, task in asked.items():
        result = await task
        if result is None:
            answers.silent.append(process)
        else:
            answers.results.append((process, result))
    return answers


async def _ask(process: ProcessInfo, command: dict[str, Any], answer_within: float) -> dict[str, Any] | None:
    """Ask one process; its result, or None if it did not answer within ``answer_within`` seconds."""
    reply_id = uuid.uuid4().hex
    future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    _waiting[reply_id] = future
    try:
        async with asyncio.timeout(answer_within):
            await membership.send(process.channel, {
                "type": ASK, "reply": f"{membership.process_channel}|{reply_id}", "command": command,
            })
            answer = await future
    except TimeoutError:
        logger.warning("Process %d on %s did not answer %r within %s s", process.pid, process.host,
                       command.get("command"), answer_within)
        return None
    except Exception as exc:  # the channel layer (Redis) cannot take the message
        logger.warning("Could not ask process %d on %s: %s", process.pid, process.host, exc)
        return None
    finally:
        _waiting.pop(reply_id, None)
    if "error" in answer:
        logger.error("Process %d on %s could not carry out %r: %s", process.pid, process.host,
                     command.get("command"), answer["error"])
        return None
    return answer["result"]


async def _ask_from_outside(command: dict[str, Any], answer_within: float) -> _Answers:
    """Ask every process of the directory from a process that serves no sessions."""
    from channels.layers import get_channel_layer

    answers = _Answers()
    host = redis_host()
    layer = get_channel_layer()
    if host is None or layer is None:
        # The in-memory layer reaches no other process, and this one holds no sessions.
        answers.incomplete = ("This process serves no Bokeh sessions, and without channels_redis it cannot "
                              "reach the processes that do (see docs/cluster.md).")
        return answers
    peers = await _read_directory(host)
    if peers is None:
        answers.incomplete = "Redis is unreachable: no process could be asked; try again shortly."
        return answers
    reply_channel = await layer.new_channel()
    waiting: dict[str, ProcessInfo] = {}
    for index, process in enumerate(peers):
        reply = f"{reply_channel}|{index}"
        try:
            await asyncio.wait_for(layer.send(process.channel, {"type": ASK, "reply": reply, "command": command}), REDIS_TIMEOUT)
        except Exception as exc:
            logger.warning("Could not ask process %d on %s: %s", process.pid, process.host, exc)
            answers.silent.append(process)
            continue
        waiting[reply] = process
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(answer_within):
            while waiting:
                message = await layer.receive(reply_channel)
                process = waiting.pop(str(message.get("reply", "")), None)
                if process is None:
                    continue
                if "error" in message:
                    logger.error("Process %d on %s could not carry out %r: %s", process.pid, process.host,
                                 command.get("command"), message["error"])
                    answers.silent.append(process)
                else:
                    answers.results.append((process, message["result"]))
    for process in waiting.values():
        logger.warning("Process %d on %s did not answer %r within %s s", process.pid, process.host,
                       command.get("command"), answer_within)
        answers.silent.append(process)
    return answers


async def _read_directory(host: dict[str, Any]) -> list[ProcessInfo] | None:
    """The processes whose heartbeat is recent (the PROCESSES_KEY hash); None if Redis is unreachable."""
    client = async_client(host)
    try:
        entries = await asyncio.wait_for(client.hgetall(PROCESSES_KEY), REDIS_TIMEOUT)
    except Exception as exc:
        logger.warning("Could not read the process directory from Redis: %s", exc)
        return None
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
    now = time.time()
    processes = []
    for channel, raw in entries.items():
        info = json.loads(raw)
        if now - info.get("beat", 0) <= ALIVE_TTL:
            processes.append(ProcessInfo.of({**info, "channel": channel.decode()}))
    return processes


async def _on_ask(message: dict[str, Any]) -> None:
    # Closing runs hooks: answer aside, so that the process's message loop keeps flowing.
    asyncio.get_running_loop().create_task(_answer(message))


async def _answer(message: dict[str, Any]) -> None:
    reply = str(message.get("reply", ""))
    try:
        body: dict[str, Any] = {"result": await carry_out(message.get("command") or {})}
    except Exception as exc:
        logger.error("Could not carry out an inventory command for another process", exc_info=True)
        body = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        await asyncio.wait_for(membership.send(reply.split("|", 1)[0], {"type": ANSWER, "reply": reply, **body}), 5)
    except Exception as exc:
        logger.warning("Could not send an inventory answer back: %s", exc)


async def _on_answer(message: dict[str, Any]) -> None:
    future = _waiting.get(str(message.get("reply", "")).split("|", 1)[-1])
    if future is not None and not future.done():
        future.set_result(message)


def install() -> None:
    """Answer other processes' questions, and hear their answers to ours."""
    membership.on(ASK, _on_ask)
    membership.on(ANSWER, _on_answer)

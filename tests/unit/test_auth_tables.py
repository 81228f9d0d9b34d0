"""The tables that grow with traffic in auth.py stay bounded: old sign-outs expire, connections leave the index."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bokehserve_django import auth


@pytest.fixture
def fresh_tables(monkeypatch):
    monkeypatch.setattr(auth, "_revoked_at", {})
    monkeypatch.setattr(auth, "_revocations_pruned_at", 0.0)
    monkeypatch.setattr(auth, "_connections", {})
    monkeypatch.setattr(auth, "_user_of_connection", {})


def user(pk: int) -> SimpleNamespace:
    return SimpleNamespace(pk=pk, is_authenticated=True)


def test_sign_outs_older_than_every_token_are_forgotten(fresh_tables, settings, monkeypatch) -> None:
    settings.BOKEHSERVE = {**settings.BOKEHSERVE, "SESSION_TOKEN_EXPIRATION": 300, "SESSION_TOKEN_RECONNECT_GRACE": 600}
    assert auth.revocation_horizon() == 300 + 600 + 60
    clock = {"now": 1_000_000.0}
    monkeypatch.setattr(auth.time, "time", lambda: clock["now"])
    for pk in range(1000):
        auth.note_revocation(pk, clock["now"])
    assert auth.is_revoked(7, clock["now"] - 1)
    clock["now"] += auth.revocation_horizon() + 1
    auth.note_revocation("latest", clock["now"])
    assert set(auth._revoked_at) == {"latest"}
    assert not auth.is_revoked(7, clock["now"] - auth.revocation_horizon() - 2)


def test_a_sign_out_within_the_horizon_is_kept(fresh_tables, monkeypatch) -> None:
    clock = {"now": 1_000_000.0}
    monkeypatch.setattr(auth.time, "time", lambda: clock["now"])
    auth.note_revocation(1, clock["now"])
    clock["now"] += auth.revocation_horizon() - 5
    auth.note_revocation(2, clock["now"])
    assert set(auth._revoked_at) == {"1", "2"}


def test_connections_leave_the_user_index_when_they_close(fresh_tables) -> None:
    first, second, anonymous = object(), object(), object()
    auth.register_connection(user(1), first)
    auth.register_connection(user(1), second)
    auth.register_connection(SimpleNamespace(pk=None, is_authenticated=False), anonymous)
    assert auth._connections == {"1": {first, second}}
    auth.unregister_connection(first)
    auth.unregister_connection(anonymous)  # never registered: nothing to do
    assert auth._connections == {"1": {second}}
    auth.unregister_connection(second)
    assert auth._connections == {} and auth._user_of_connection == {}


def test_a_connection_belongs_to_one_user(fresh_tables) -> None:
    connection = object()
    auth.register_connection(user(1), connection)
    auth.register_connection(user(2), connection)
    assert auth._connections == {"2": {connection}}

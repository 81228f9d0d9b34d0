"""The rules for reconnecting with an expired session token (reconnect.py, bokeh#14416)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.contrib.auth.models import AnonymousUser

from bokehserve_django import reconnect, signing
from bokehserve_django.auth import TOKEN_USER_KEY
from bokehserve_django.cluster import PAGE_TOKEN_KEY
from bokehserve_django.exceptions import InvalidToken, SessionRefused


@pytest.fixture
def signed(settings):
    settings.BOKEHSERVE = {"SIGN_SESSIONS": True, "SESSION_TOKEN_RECONNECT_GRACE": 60}


def expired(payload: dict, seconds_ago: int) -> signing.TokenInfo:
    token = signing.generate_token(signing.generate_session_id(), extra_payload=payload, expiration=-seconds_ago)
    return signing.read_token(token, allow_expired=True)


def user(pk: int) -> SimpleNamespace:
    return SimpleNamespace(pk=pk, is_authenticated=True)


class TestReadToken:
    def test_expired_tokens_are_refused_unless_asked_for(self, signed) -> None:
        token = signing.generate_token(signing.generate_session_id(), expiration=-5)
        with pytest.raises(InvalidToken, match="expired"):
            signing.read_token(token)
        info = signing.read_token(token, allow_expired=True)
        assert info.expired and 4 <= info.expired_for <= 10

    def test_valid_tokens_are_not_expired(self, signed) -> None:
        info = signing.read_token(signing.generate_token(signing.generate_session_id()), allow_expired=True)
        assert not info.expired and info.expired_for == 0

    def test_a_forged_expired_token_is_still_refused(self, signed) -> None:
        token = signing.generate_token(signing.generate_session_id(), expiration=-5)
        with pytest.raises(InvalidToken, match="signature"):
            signing.read_token(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), allow_expired=True)


class TestCheckExpiredToken:
    def test_the_tokens_own_user_may_reconnect(self, signed) -> None:
        reconnect.check_expired_token(expired({PAGE_TOKEN_KEY: True, TOKEN_USER_KEY: "7"}, 5), user(7))

    def test_an_anonymous_page_token_reconnects_anonymously(self, signed) -> None:
        reconnect.check_expired_token(expired({PAGE_TOKEN_KEY: True}, 5), AnonymousUser())

    @pytest.mark.parametrize("connection", [user(8), AnonymousUser()], ids=["another-user", "anonymous"])
    def test_anyone_else_is_refused(self, signed, connection) -> None:
        with pytest.raises(SessionRefused, match="not its user's"):
            reconnect.check_expired_token(expired({PAGE_TOKEN_KEY: True, TOKEN_USER_KEY: "7"}, 5), connection)

    def test_a_signed_in_user_cannot_take_an_anonymous_pages_expired_token(self, signed) -> None:
        with pytest.raises(SessionRefused):
            reconnect.check_expired_token(expired({PAGE_TOKEN_KEY: True}, 5), user(7))

    def test_tokens_not_made_by_a_page_get_no_grace(self, signed) -> None:
        with pytest.raises(InvalidToken, match="expired"):
            reconnect.check_expired_token(expired({}, 5), AnonymousUser())


class TestReloadReason:
    def test_within_the_grace_the_page_reconnects(self, signed) -> None:
        assert reconnect.reload_reason(expired({PAGE_TOKEN_KEY: True}, 30)) is None

    def test_beyond_the_grace_the_page_reloads(self, signed) -> None:
        reason = reconnect.reload_reason(expired({PAGE_TOKEN_KEY: True}, 90))
        assert reason is not None and "SESSION_TOKEN_RECONNECT_GRACE (60 s)" in reason and "reload the page" in reason

    def test_a_grace_of_zero_always_reloads(self, settings) -> None:
        settings.BOKEHSERVE = {"SIGN_SESSIONS": True, "SESSION_TOKEN_RECONNECT_GRACE": 0}
        assert reconnect.reload_reason(expired({PAGE_TOKEN_KEY: True}, 1)) is not None

"""Session ids and tokens: bokeh-compatible, signed with our key, refused when forged or stale."""

from __future__ import annotations

import base64
import json
import time
import zlib

import pytest
from bokeh.util.token import generate_jwt_token, get_session_id, get_token_payload

from bokehserve_django import signing
from bokehserve_django.exceptions import InvalidToken


@pytest.fixture
def signed(settings):
    settings.BOKEHSERVE = {"SIGN_SESSIONS": True}
    return signing.secret_key()


class TestSessionIds:
    def test_signed_ids_carry_a_signature(self, signed) -> None:
        session_id = signing.generate_session_id()
        base, _, signature = session_id.partition(".")
        assert len(base) == 44 and len(signature) == 43
        assert signing.check_session_id(session_id) == session_id

    def test_unsigned_id_is_refused_when_signing(self, signed) -> None:
        with pytest.raises(InvalidToken):
            signing.check_session_id("a" * 44)

    def test_malformed_ids_are_refused(self, settings) -> None:
        settings.BOKEHSERVE = {"SIGN_SESSIONS": False}
        for bad in ["", "has space", "x" * 300, "a/b", "é"]:
            with pytest.raises(InvalidToken):
                signing.check_session_id(bad)

    def test_signing_is_on_by_default_without_debug(self, settings) -> None:
        settings.BOKEHSERVE = {}
        settings.DEBUG = False
        assert "." in signing.generate_session_id()
        settings.DEBUG = True
        assert "." not in signing.generate_session_id()


class TestTokens:
    def test_round_trip_keeps_payload_and_bokeh_reads_it(self, signed) -> None:
        session_id = signing.generate_session_id()
        token = signing.generate_token(session_id, extra_payload={"arguments": {"N": ["5"]}})
        info = signing.read_token(token)
        assert info.session_id == session_id == get_session_id(token)
        assert info.payload["arguments"] == {"N": ["5"]}
        assert get_token_payload(token)["arguments"] == {"N": ["5"]}

    def test_a_token_made_with_its_payload_reads_back_as_that_payload(self, signed) -> None:
        session_id = signing.generate_session_id()
        extra = {"arguments": {"N": [b"5"]}, "cookies": {"a": "b"}, "bokehserve_page": True}
        token, payload = signing.generate_token_with_payload(session_id, extra_payload=extra)
        assert payload == signing.read_token(token).payload
        assert payload["arguments"] == {"N": [b"5"]} and "session_expiry" in payload

    def test_key_is_derived_from_django_secret_key(self, settings) -> None:
        settings.BOKEHSERVE = {}
        first = signing.secret_key()
        assert settings.SECRET_KEY.encode() not in first
        settings.SECRET_KEY = "another-secret-key-for-this-test-only-000000000"
        assert signing.secret_key() != first
        settings.BOKEHSERVE = {"SECRET_KEY": "explicit"}
        assert signing.secret_key() == b"explicit"

    @pytest.mark.parametrize(
        "forge",
        [
            pytest.param(lambda t, sid, key: generate_jwt_token(sid, secret_key=b"wrong-key", signed=True), id="wrong-key"),
            pytest.param(lambda t, sid, key: generate_jwt_token(sid.split(".")[0], secret_key=None, signed=False), id="unsigned"),
            pytest.param(lambda t, sid, key: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), id="altered-signature"),
            pytest.param(lambda t, sid, key: _replace_payload(t, {"session_id": sid, "session_expiry": 9e9}), id="altered-payload"),
            pytest.param(lambda t, sid, key: generate_jwt_token(sid, secret_key=key, signed=True, expiration=-1), id="expired"),
            pytest.param(lambda t, sid, key: "garbage", id="garbage"),
            pytest.param(lambda t, sid, key: "", id="empty"),
            pytest.param(lambda t, sid, key: "a" * 70_000, id="oversize"),
        ],
    )
    def test_forged_tokens_are_refused(self, signed, forge) -> None:
        session_id = signing.generate_session_id()
        token = signing.generate_token(session_id)
        with pytest.raises(InvalidToken):
            signing.read_token(forge(token, session_id, signed))

    def test_expired_token_names_the_flag(self, settings) -> None:
        settings.BOKEHSERVE = {"SIGN_SESSIONS": False}
        token = signing.generate_token("a" * 44, expiration=-1)
        with pytest.raises(InvalidToken, match="--session-token-expiration"):
            signing.read_token(token)

    def test_zlib_bomb_in_unsigned_token_is_refused(self, settings) -> None:
        settings.BOKEHSERVE = {"SIGN_SESSIONS": False}
        bomb = base64.urlsafe_b64encode(zlib.compress(b'{"a": "' + b"0" * 20_000_000 + b'"}', 9)).decode().rstrip("=")
        payload = {"session_id": "a" * 44, "session_expiry": time.time() + 60, "__bk__zlib_": bomb}
        token = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
        with pytest.raises(InvalidToken, match="too large"):
            signing.read_token(token)


def _replace_payload(token: str, payload: dict) -> str:
    first = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return first + "." + token.split(".", 1)[1]


class TestIssuedTokens:
    """A page token this process made is read back once without decoding it again."""

    @pytest.fixture(autouse=True)
    def _forget_issued(self):
        signing._issued.clear()
        yield
        signing._issued.clear()

    @pytest.fixture
    def checks(self, monkeypatch) -> list[str]:
        """Names of the full checks run: a read that takes them records one."""
        seen: list[str] = []
        real = signing._checked_contents

        def recording(token):
            seen.append("checked")
            return real(token)

        monkeypatch.setattr(signing, "_checked_contents", recording)
        return seen

    def test_the_first_read_of_an_issued_token_skips_the_checks_and_gives_the_same_contents(self, signed, checks) -> None:
        session_id = signing.generate_session_id()
        token, payload = signing.generate_token_with_payload(session_id, extra_payload={"arguments": {"a": ["1"]}})
        first = signing.read_token(token)
        assert checks == []
        assert (first.session_id, first.payload) == (session_id, payload)
        second = signing.read_token(token)  # a reconnect: checked as any token
        assert checks == ["checked"]
        assert (second.session_id, second.payload) == (first.session_id, first.payload)

    def test_an_issued_token_past_its_expiry_is_still_expired(self, signed, checks) -> None:
        token, _ = signing.generate_token_with_payload(signing.generate_session_id(), expiration=-10)
        with pytest.raises(InvalidToken, match="expired"):
            signing.read_token(token)
        assert checks == []

    def test_an_issued_token_is_checked_again_once_the_key_has_changed(self, signed, checks, settings) -> None:
        token, _ = signing.generate_token_with_payload(signing.generate_session_id())
        settings.BOKEHSERVE = {"SIGN_SESSIONS": True, "SECRET_KEY": "another key, another site"}
        with pytest.raises(InvalidToken, match="signature"):
            signing.read_token(token)
        assert checks == ["checked"]

    def test_only_the_newest_issued_tokens_are_remembered(self, signed, checks) -> None:
        tokens = [signing.generate_token_with_payload(signing.generate_session_id())[0] for _ in range(signing.ISSUED_TOKENS_KEPT + 1)]
        assert len(signing._issued) == signing.ISSUED_TOKENS_KEPT
        signing.read_token(tokens[0])  # forgotten: a page that never connected
        assert checks == ["checked"]
        signing.read_token(tokens[-1])
        assert checks == ["checked"]

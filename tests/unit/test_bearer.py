"""Bearer-token keys, audiences and settings (bearer.py, conf.py); no database, no network."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from bokehserve_django import bearer, signing
from bokehserve_django.conf import bokeh_settings


class TestKeysAndAudience:
    def test_the_derived_key_is_not_the_session_signing_key(self, settings) -> None:
        settings.BOKEHSERVE = {"SIGN_SESSIONS": True}
        assert bearer.signing_key() != signing.secret_key()
        assert len(bearer.signing_key()) >= 32

    def test_a_configured_key_is_used_as_given(self, settings) -> None:
        settings.BOKEHSERVE = {"BEARER_TOKEN_KEY": "k" * 40}
        assert bearer.signing_key() == b"k" * 40

    def test_the_site_defaults_to_the_first_plain_allowed_host(self, settings) -> None:
        settings.BOKEHSERVE = {}
        settings.ALLOWED_HOSTS = [".example.com", "*", "bokeh.example.com", "other.example.com"]
        assert bearer.audience() == "urn:bokehserve:bokeh.example.com"
        assert bearer.audience("sales") == "urn:bokehserve:bokeh.example.com:app:sales"
        settings.ALLOWED_HOSTS = []
        assert bearer.site_name() == "localhost"
        settings.BOKEHSERVE = {"BEARER_TOKEN_SITE": "reports"}
        assert bearer.audience() == "urn:bokehserve:reports"

    @pytest.mark.parametrize("value", ["Bearer opaque", "Bearer", "Basic abc", "", "Bearer a.b.c"])
    def test_values_that_are_not_our_tokens_are_not_ours(self, value) -> None:
        assert not bearer.carries_our_token(value)


class TestSettings:
    @pytest.mark.parametrize(("name", "value"), [
        ("BEARER_TOKEN_TTL", 0),
        ("BEARER_TOKEN_TTL", -5),
        ("BEARER_TOKEN_TTL", "3600"),
        ("BEARER_TOKEN_KEY", 123),
        ("BEARER_TOKEN_SITE", ""),
        ("SESSION_TOKEN_RECONNECT_GRACE", -1),
        ("SESSION_TOKEN_RECONNECT_GRACE", 1.5),
    ])
    def test_invalid_values_name_the_setting(self, settings, name, value) -> None:
        settings.BOKEHSERVE = {name: value}
        with pytest.raises(ImproperlyConfigured, match=f"BOKEHSERVE\\['{name}'\\] must be"):
            getattr(bokeh_settings, name)

    def test_defaults(self, settings) -> None:
        settings.BOKEHSERVE = {}
        assert bokeh_settings.BEARER_TOKEN_TTL == 3600
        assert bokeh_settings.SESSION_TOKEN_RECONNECT_GRACE == 86_400
        assert bokeh_settings.BEARER_TOKEN_KEY is None and bokeh_settings.BEARER_TOKEN_SITE is None

"""Settings: defaults, validation with clear messages, runbokeh overrides, reload on change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from bokehserve_django.conf import DEFAULTS, OVERRIDES_ENV, bokeh_settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


class TestSettings:
    def test_defaults_apply(self, settings) -> None:
        settings.BOKEHSERVE = {}
        assert bokeh_settings.UNUSED_SESSION_LIFETIME == 15_000
        assert bokeh_settings.CHECK_UNUSED_SESSIONS == 17_000
        assert bokeh_settings.SESSION_TOKEN_EXPIRATION == 300

    def test_override_settings_is_seen(self, settings) -> None:
        settings.BOKEHSERVE = {"UNUSED_SESSION_LIFETIME": 5}
        assert bokeh_settings.UNUSED_SESSION_LIFETIME == 5
        settings.BOKEHSERVE = {"UNUSED_SESSION_LIFETIME": 7}
        assert bokeh_settings.UNUSED_SESSION_LIFETIME == 7

    def test_unknown_key_is_named(self, settings) -> None:
        settings.BOKEHSERVE = {"UNUSED_SESSION_LIFETYME": 5}
        with pytest.raises(ImproperlyConfigured, match="Invalid BOKEHSERVE setting: 'UNUSED_SESSION_LIFETYME'"):
            bokeh_settings.UNUSED_SESSION_LIFETIME  # noqa: B018

    @pytest.mark.parametrize(
        ("key", "value"),
        [("UNUSED_SESSION_LIFETIME", -1), ("KEEP_ALIVE", "10"), ("ALLOWED_ORIGINS", "example.com"), ("RESOURCES", "cdnn"),
         ("INDEX_TITLES", ["sliders"]), ("INDEX_TITLES", {"sliders": 1})],
    )
    def test_bad_values_are_refused_with_the_key(self, settings, key, value) -> None:
        settings.BOKEHSERVE = {key: value}
        with pytest.raises(ImproperlyConfigured, match=key):
            getattr(bokeh_settings, key)

    def test_runbokeh_overrides_win_and_extend(self, settings, monkeypatch) -> None:
        settings.BOKEHSERVE = {"ALLOWED_ORIGINS": ["example.com"], "KEEP_ALIVE": 1000}
        monkeypatch.setenv(OVERRIDES_ENV, json.dumps({"KEEP_ALIVE": 5, "EXTRA_ORIGINS": ["localhost:5006"]}))
        bokeh_settings.reload()
        assert bokeh_settings.KEEP_ALIVE == 5
        assert bokeh_settings.ALLOWED_ORIGINS == ["example.com", "localhost:5006"]
        monkeypatch.delenv(OVERRIDES_ENV)
        bokeh_settings.reload()

    def test_sign_sessions_follows_debug_unless_set(self, settings) -> None:
        settings.BOKEHSERVE = {}
        settings.DEBUG = False
        assert bokeh_settings.sign_sessions is True
        settings.BOKEHSERVE = {"SIGN_SESSIONS": False}
        assert bokeh_settings.sign_sessions is False

    def test_every_setting_is_documented(self) -> None:
        text = DOCS.read_text()
        missing = [key for key in DEFAULTS if f"`{key}`" not in text]
        assert missing == []

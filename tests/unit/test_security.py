"""Origin allow-list, Host checks and what request data may go into tokens."""

from __future__ import annotations

import pytest

from bokehserve_django import security


@pytest.mark.parametrize(
    ("patterns", "origin", "allowed"),
    [
        (["localhost:5006"], "http://localhost:5006", True),
        (["localhost:5006"], "http://localhost:5007", False),
        (["example.com"], "https://example.com", True),  # no port: the scheme's default
        (["example.com"], "http://example.com", True),
        (["example.com"], "https://example.com:8443", False),
        (["example.com:*"], "https://example.com:8443", True),
        (["*.example.com"], "https://app.example.com", True),
        (["*.example.com"], "https://example.com.evil.org", False),
        (["https://example.com"], "http://example.com", False),
        (["*"], "https://anything.org", True),
        (["[::1]:5006"], "http://[::1]:5006", True),
        (["localhost:5006"], "null", False),
        (["localhost:5006"], "not a url", False),
    ],
)
def test_origin_patterns(settings, patterns, origin, allowed) -> None:
    settings.BOKEHSERVE = {"ALLOWED_ORIGINS": patterns}
    assert security.origin_allowed(origin) is allowed


def test_without_patterns_allowed_hosts_decide(settings) -> None:
    settings.BOKEHSERVE = {}
    settings.ALLOWED_HOSTS = ["example.com"]
    assert security.origin_allowed("https://example.com")
    assert not security.origin_allowed("https://evil.org")


def test_missing_origin_is_allowed_for_non_browser_clients(settings) -> None:
    settings.BOKEHSERVE = {"ALLOWED_ORIGINS": ["example.com"]}
    assert security.origin_allowed(None)


def test_host_must_be_in_allowed_hosts(settings) -> None:
    settings.ALLOWED_HOSTS = ["example.com"]
    assert security.host_allowed("example.com:8000")
    assert not security.host_allowed("rebind.evil.org")
    assert not security.host_allowed("")


def test_refusal_hint_says_how_to_allow(settings) -> None:
    settings.BOKEHSERVE = {"ALLOWED_ORIGINS": ["example.com"]}
    hint = security.refusal_hint("https://other.org:8443")
    assert "--allow-websocket-origin=other.org:8443" in hint
    assert "ALLOWED_ORIGINS" in hint


class TestTokenFilters:
    def test_credentials_stay_out_by_default(self, settings) -> None:
        settings.BOKEHSERVE = {}
        headers = {"Authorization": "Bearer x", "Cookie": "sessionid=1", "User-Agent": "t"}
        cookies = {settings.SESSION_COOKIE_NAME: "s", settings.CSRF_COOKIE_NAME: "c", "theme": "dark"}
        assert security.filter_headers(headers) == {"User-Agent": "t"}
        assert security.filter_cookies(cookies) == {"theme": "dark"}

    def test_include_and_exclude_lists_choose(self, settings) -> None:
        settings.BOKEHSERVE = {"INCLUDE_COOKIES": ["sessionid"], "EXCLUDE_HEADERS": ["user-agent"]}
        assert security.filter_cookies({"sessionid": "s", "theme": "d"}) == {"sessionid": "s"}
        # An exclude list adds to the credentials that always stay out.
        assert security.filter_headers({"User-Agent": "t", "Authorization": "a", "X-A": "1"}) == {"X-A": "1"}
        settings.BOKEHSERVE = {"INCLUDE_HEADERS": ["Authorization"]}
        assert security.filter_headers({"User-Agent": "t", "Authorization": "a"}) == {"Authorization": "a"}

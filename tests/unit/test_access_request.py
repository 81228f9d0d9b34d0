"""AccessRequest: one request type for access policies, from an HttpRequest and from a WebSocket scope."""

from __future__ import annotations

import dataclasses

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory

from bokehserve_django.access import AccessRequest, parse_policy

BROWSER_HEADERS = {"User-Agent": "Firefox", "X-Team": "red", "Cookie": "sessionid=abc; theme=dark"}


def http_request(query: str = "team=red&bokeh-session-id=xyz") -> AccessRequest:
    request = RequestFactory().get(
        f"/sales?{query}",
        headers={"User-Agent": "Firefox", "X-Team": "red"},
        HTTP_HOST="reports.example:8000",
        REMOTE_ADDR="10.0.0.7",
    )
    request.COOKIES = {"sessionid": "abc", "theme": "dark"}
    return AccessRequest.for_http(request, "sales", user=AnonymousUser())


def websocket_request(scheme: str = "ws") -> AccessRequest:
    scope = {
        "type": "websocket",
        "scheme": scheme,
        "path": "/sales/ws",
        "query_string": b"",
        "client": ("10.0.0.7", 51000),
        "headers": [
            (b"host", b"reports.example:8000"),
            (b"user-agent", b"Firefox"),
            (b"x-team", b"red"),
            (b"cookie", b"sessionid=abc; theme=dark"),
            (b"x-forwarded-for", b"1.2.3.4"),
            (b"x-forwarded-for", b"5.6.7.8"),
        ],
    }
    return AccessRequest.for_websocket(scope, "sales", user=AnonymousUser(), arguments={"team": [b"red"]})


class TestBothTransports:
    def test_the_same_browser_request_reads_the_same_on_http_and_websocket(self) -> None:
        http, ws = http_request(), websocket_request()
        assert (http.transport, ws.transport) == ("http", "websocket")
        assert (http.path, ws.path) == ("/sales", "/sales/ws")
        for request in (http, ws):
            assert request.app_name == "sales"
            assert request.method == "GET"
            assert request.scheme == "http"
            assert request.host == "reports.example:8000"
            assert request.remote_addr == "10.0.0.7"
            assert request.headers["X-Team"] == request.headers["x-team"] == "red"
            assert request.headers["user-agent"] == "Firefox"
            assert dict(request.cookies) == {"sessionid": "abc", "theme": "dark"}
            # bokeh-* arguments select sessions; they are not the app's.
            assert dict(request.arguments) == {"team": ("red",)}

    def test_header_names_are_lower_case_on_both(self) -> None:
        assert "x-team" in list(http_request().headers)
        assert "x-team" in list(websocket_request().headers)

    def test_repeated_websocket_headers_are_joined(self) -> None:
        assert websocket_request().headers["X-Forwarded-For"] == "1.2.3.4, 5.6.7.8"

    def test_a_wss_websocket_is_https(self) -> None:
        assert websocket_request("wss").scheme == "https"

    def test_arguments_are_decoded_and_keep_repeats(self) -> None:
        request = http_request("tag=a&tag=b&city=Z%C3%BCrich")
        assert dict(request.arguments) == {"tag": ("a", "b"), "city": ("Zürich",)}

    def test_no_user_is_the_anonymous_user(self) -> None:
        request = AccessRequest.for_http(RequestFactory().get("/sales"), "sales", user=None)
        assert not request.user.is_authenticated
        assert isinstance(request.user, AnonymousUser)

    def test_it_cannot_be_changed(self) -> None:
        request = http_request()
        with pytest.raises(dataclasses.FrozenInstanceError):
            request.path = "/other"  # type: ignore[misc]
        with pytest.raises(TypeError):
            request.cookies["sessionid"] = "forged"  # type: ignore[index]
        with pytest.raises(TypeError):
            request.arguments["team"] = ("blue",)  # type: ignore[index]


class TestPolicies:
    def test_a_callable_gets_the_user_and_the_access_request(self) -> None:
        seen = []

        def red_team_only(user, request):
            seen.append((user, request))
            return request.headers.get("X-Team") == "red"

        policy = parse_policy(red_team_only, "test")
        for request in (http_request(), websocket_request()):
            assert policy.allows_sync(request)
        assert [type(request) for _, request in seen] == [AccessRequest, AccessRequest]
        assert all(user is request.user for user, request in seen)
        blue = dataclasses.replace(websocket_request(), headers={"x-team": "blue"})
        assert not policy.allows_sync(blue)

    def test_built_in_policies_read_request_user(self) -> None:
        login = parse_policy("login", "test")
        assert not login.allows_sync(http_request())
        assert parse_policy("public", "test").allows_sync(websocket_request())

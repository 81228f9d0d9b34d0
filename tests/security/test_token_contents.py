"""The token that reaches the browser carries no credentials by default.

BokehJS exposes the session token to page JavaScript, and bokeh copies request headers and
cookies into it. By default every header and cookie whose name looks like a credential
(bokehserve_django/credentials.py: Django's session and CSRF cookies, the Authorization and
Cookie headers, JWT and "remember me" cookies, API-key headers...) stays out, so an XSS
cannot lift a login from a Bokeh token; INCLUDE_COOKIES / INCLUDE_HEADERS put them in when a
site asks, and the system check W007 says so.
"""

from __future__ import annotations

import pytest
from bokeh.util.token import get_token_payload
from django.conf import settings
from django.core.checks import Warning

from bokehserve_django import checks, security
from tests.security.helpers import client_for, token_in

#: Cookies that Django and common auth packages (or their usual recipes) use for credentials.
CREDENTIAL_COOKIES = [
    "sessionid",  # Django SESSION_COOKIE_NAME
    "csrftoken",  # Django CSRF_COOKIE_NAME
    "access",  # djangorestframework-simplejwt cookie recipes
    "refresh",
    "access_token",
    "refresh_token",
    "jwt-auth",  # dj-rest-auth examples
    "jwt-refresh-token",
    "my-app-auth",
    "auth_token",  # knox / DRF token cookie recipes
    "remember_token",  # "remember me" cookies
    "remember_web_59ba36addc2b2f9401580f014c7f58ea4e30989d",
    "rememberme",
    "messages_sessionid",
    "SESSION",
    "JSESSIONID",
    "PHPSESSID",
    "ASP.NET_SessionId",
    "connect.sid",
    "_session_id",
    "__Host-session",
    "__Secure-next-auth.session-token",
    "XSRF-TOKEN",
    "api_key",
    "apikey",
    "client_secret",
    "password",
    "user_pwd",
    "wordpress_logged_in_abc",
    "allauth_login_state",
    "oauth_state",
    "id_token",
    "bearer",
    "credentials",
]

#: Headers that carry credentials.
CREDENTIAL_HEADERS = [
    "Authorization",
    "Proxy-Authorization",
    "Cookie",
    "X-Api-Key",
    "X-Auth-Token",
    "X-CSRFToken",
    "X-XSRF-Token",
    "X-Session-Token",  # allauth headless
    "X-Amz-Security-Token",
    "X-Goog-Iap-Jwt-Assertion",
    "Cf-Access-Jwt-Assertion",
    "X-Hub-Signature-256",
    "X-Secret",
    "X-Password",
    "X-Refresh",
    "Api-Key",
    "Private-Token",
    "X-Forwarded-Access-Token",
    "X-Auth-Request-Email",  # oauth2-proxy
]

#: What must still reach app code (session_context.request): ordinary cookies and headers.
HARMLESS_COOKIES = {"theme": "dark", "django_language": "fr", "messages": "m", "_ga": "GA1.1", "tz": "UTC"}
HARMLESS_HEADERS = {
    "User-Agent": "test-browser",
    "Accept-Language": "fr",
    "X-Team": "blue",
    "X-Forwarded-For": "10.0.0.1",
    "Referer": "http://127.0.0.1/",
}

SECRET_AUTH = "Bearer very-secret-api-token"
CSRF_VALUE = "c" * 32


async def signed_in_request(user, path: str) -> tuple[str, str, dict]:
    """GET ``path`` as ``user`` with session + CSRF cookies, a harmless cookie and an Authorization header.

    Returns (session cookie value, response text, decoded token payload).
    """
    client = await client_for(user)
    client.cookies[settings.CSRF_COOKIE_NAME] = CSRF_VALUE
    client.cookies["theme"] = "dark"
    response = await client.get(path, {"bokeh-autoload-element": "x"} if path.endswith(".js") else {},
                                headers={"Authorization": SECRET_AUTH, "X-Team": "blue"})
    assert response.status_code == 200
    text = response.content.decode()
    return client.cookies[settings.SESSION_COOKIE_NAME].value, text, get_token_payload(token_in(text))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/login", "/login/autoload.js"])
async def test_no_django_session_csrf_or_authorization_in_the_token(path, users, fresh_runtime) -> None:
    session_key, text, payload = await signed_in_request(users["bob"], path)
    assert payload["cookies"] == {"theme": "dark"}
    headers = {name.lower(): value for name, value in payload["headers"].items()}
    assert "authorization" not in headers
    assert "cookie" not in headers
    assert headers["x-team"] == "blue"
    # Nowhere in the page, token included (decompressed) or not.
    for secret in (session_key, CSRF_VALUE, SECRET_AUTH.split()[1]):
        assert secret not in text
        assert secret not in repr(payload)
    # What the token does say about the user: a pk and when it was issued, nothing secret.
    assert payload["bokehserve_user"] == str(users["bob"].pk)


@pytest.mark.django_db(transaction=True)
async def test_include_cookies_and_headers_put_them_in(security_settings, users, fresh_runtime) -> None:
    security_settings.BOKEHSERVE = {
        **security_settings.BOKEHSERVE,
        "INCLUDE_COOKIES": [settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME],
        "INCLUDE_HEADERS": ["Authorization"],
    }
    session_key, _text, payload = await signed_in_request(users["bob"], "/login")
    assert payload["cookies"] == {settings.SESSION_COOKIE_NAME: session_key, settings.CSRF_COOKIE_NAME: CSRF_VALUE}
    assert {k.lower(): v for k, v in payload["headers"].items()} == {"authorization": SECRET_AUTH}


# Every credential-looking name stays out by default ------------------------------------------


@pytest.mark.parametrize("name", CREDENTIAL_COOKIES)
def test_a_credential_cookie_stays_out_by_default(security_settings, name) -> None:
    assert security.filter_cookies({name: "secret-value", **HARMLESS_COOKIES}) == HARMLESS_COOKIES


@pytest.mark.parametrize("name", CREDENTIAL_HEADERS)
def test_a_credential_header_stays_out_by_default(security_settings, name) -> None:
    assert security.filter_headers({name: "secret-value", **HARMLESS_HEADERS}) == HARMLESS_HEADERS


def test_exclude_lists_add_to_the_credentials_and_do_not_replace_them(security_settings) -> None:
    security_settings.BOKEHSERVE = {
        **security_settings.BOKEHSERVE, "EXCLUDE_COOKIES": ["theme"], "EXCLUDE_HEADERS": ["X-Team"]
    }
    assert security.filter_cookies({"sessionid": "s", "theme": "d", "tz": "UTC"}) == {"tz": "UTC"}
    assert security.filter_headers({"Authorization": "a", "X-Team": "b", "Accept": "*/*"}) == {"Accept": "*/*"}


@pytest.mark.parametrize(
    ("setting", "value", "cookie"),
    [
        ("SESSION_COOKIE_NAME", "mysite", "mysite"),
        ("CSRF_COOKIE_NAME", "mysite_c", "mysite_c"),
        ("REST_AUTH", {"JWT_AUTH_COOKIE": "app-a", "JWT_AUTH_REFRESH_COOKIE": "app-r"}, "app-a"),
        ("REST_AUTH", {"JWT_AUTH_COOKIE": "app-a", "JWT_AUTH_REFRESH_COOKIE": "app-r"}, "app-r"),
        ("JWT_AUTH_COOKIE", "app-a", "app-a"),
        ("JWT_AUTH", {"JWT_AUTH_COOKIE": "app-a"}, "app-a"),
        ("SIMPLE_JWT", {"AUTH_COOKIE": "app-a"}, "app-a"),
    ],
)
def test_cookie_names_chosen_in_auth_settings_stay_out(security_settings, setting, value, cookie) -> None:
    # Names without any tell-tale word: only the setting says they are credentials.
    setattr(security_settings, setting, value)
    assert security.filter_cookies({cookie: "secret-value", "theme": "dark"}) == {"theme": "dark"}


def test_django_csrf_header_setting_is_honoured(security_settings) -> None:
    security_settings.CSRF_HEADER_NAME = "HTTP_X_MYSITE_C"
    assert security.filter_headers({"X-Mysite-C": "secret-value", "X-Team": "blue"}) == {"X-Team": "blue"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/login", "/login/autoload.js"])
async def test_a_real_page_request_puts_only_harmless_values_into_the_token(path, users, fresh_runtime) -> None:
    client = await client_for(users["bob"])
    session_key = client.cookies[settings.SESSION_COOKIE_NAME].value  # the real one: bob stays signed in
    for name in CREDENTIAL_COOKIES:
        if name != settings.SESSION_COOKIE_NAME:
            client.cookies[name] = f"secret-cookie-{name}"
    for name, value in HARMLESS_COOKIES.items():
        client.cookies[name] = value
    headers = {**{name: f"secret-header-{name}" for name in CREDENTIAL_HEADERS if name != "Cookie"}, **HARMLESS_HEADERS}
    response = await client.get(path, {"bokeh-autoload-element": "x"} if path.endswith(".js") else {}, headers=headers)
    assert response.status_code == 200
    text = response.content.decode()
    payload = get_token_payload(token_in(text))
    assert payload["cookies"] == HARMLESS_COOKIES
    assert {k.lower(): v for k, v in payload["headers"].items() if k.lower() in {h.lower() for h in HARMLESS_HEADERS}} \
        == {k.lower(): v for k, v in HARMLESS_HEADERS.items()}
    for secret in ("secret-", session_key):
        assert secret not in repr(payload)
        assert secret not in text
    # What else a token carries (docs/security.md lists it): the session's expiry, the page's
    # query arguments, the user's pk and when the token was issued, and the page marker.
    assert set(payload) == {"session_expiry", "headers", "cookies", "arguments", "bokehserve_user",
                            "bokehserve_issued", "bokehserve_page"}


# INCLUDE_* lets a credential through, and the system check says so ----------------------------


def test_include_lets_exactly_the_listed_names_through(security_settings) -> None:
    security_settings.BOKEHSERVE = {
        **security_settings.BOKEHSERVE, "INCLUDE_COOKIES": ["access", "theme"], "INCLUDE_HEADERS": ["x-api-key"]
    }
    cookies = {"access": "a", "refresh": "r", "theme": "dark", "tz": "UTC"}
    assert security.filter_cookies(cookies) == {"access": "a", "theme": "dark"}
    assert security.filter_headers({"X-Api-Key": "k", "Authorization": "a", "X-Team": "b"}) == {"X-Api-Key": "k"}


def credential_warning(setting: str, names: str) -> Warning:
    return Warning(
        checks.Messages.CREDENTIAL_INCLUDED.format(setting=setting, names=names),
        hint=checks.Hints.CREDENTIAL_INCLUDED.format(setting=setting),
        id=checks.Codes.CREDENTIAL_INCLUDED,
    )


def test_the_check_warns_when_include_lets_credentials_through(security_settings) -> None:
    security_settings.BOKEHSERVE = {
        **security_settings.BOKEHSERVE,
        "INCLUDE_COOKIES": ["theme", "sessionid", "jwt-auth"],
        "INCLUDE_HEADERS": ["User-Agent", "Authorization"],
    }
    assert checks.Codes.CREDENTIAL_INCLUDED == "bokehserve_django.W007"
    assert checks.check_token_contents() == [
        credential_warning("INCLUDE_HEADERS", "'Authorization'"),
        credential_warning("INCLUDE_COOKIES", "'sessionid', 'jwt-auth'"),
    ]


def test_the_check_is_quiet_for_harmless_includes_and_by_default(security_settings) -> None:
    assert checks.check_token_contents() == []
    security_settings.BOKEHSERVE = {
        **security_settings.BOKEHSERVE, "INCLUDE_COOKIES": ["theme"], "INCLUDE_HEADERS": ["User-Agent"]
    }
    assert checks.check_token_contents() == []


def test_the_check_runs_with_manage_py_check_not_only_with_deploy(security_settings) -> None:
    from django.core.checks import registry

    security_settings.BOKEHSERVE = {**security_settings.BOKEHSERVE, "INCLUDE_HEADERS": ["Authorization"]}
    ids = [message.id for message in registry.run_checks(include_deployment_checks=False)]
    assert ids.count("bokehserve_django.W007") == 1

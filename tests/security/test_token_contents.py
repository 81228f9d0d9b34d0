"""The token that reaches the browser carries no credentials by default.

BokehJS exposes the session token to page JavaScript, and bokeh copies request headers and
cookies into it. By default Django's session and CSRF cookies and the Authorization header
(and the Cookie header itself) stay out, so an XSS cannot lift the Django session from a
Bokeh token; INCLUDE_COOKIES / INCLUDE_HEADERS put them in when a site asks.
"""

from __future__ import annotations

import pytest
from bokeh.util.token import get_token_payload
from django.conf import settings

from tests.security.helpers import client_for, token_in

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

"""A browser-like HTTP client for the Django admin of a live server: cookies, CSRF, no redirects followed.

Sign-in is by a Django session made in the test database (``django.test.Client.force_login``),
which the live servers share, so users who are not staff (refused by the admin login form)
can be signed in too.
"""

from __future__ import annotations

import http.cookiejar
import re
import ssl
import urllib.error
import urllib.request
from html import unescape
from typing import Any
from urllib.parse import urlencode, urlsplit

#: Seconds any one request may take.
TIMEOUT = 15

_CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_MESSAGE = re.compile(r'<li class="(success|warning|error|info)">(.*?)</li>', re.S)


#: What an operator of the live-sessions admin needs: see the page, and act on it.
OPERATOR_PERMISSIONS = ("view_livesession", "change_livesession")


def make_user(name: str, *, staff: bool, perms: tuple[str, ...] = ()) -> Any:
    """A user in the test database, staff or not, with these bokehserve_django permissions."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    user = get_user_model()._default_manager.create_user(name, is_staff=staff)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="bokehserve_django"))
    return user


def session_cookie(user: Any) -> str:
    """The ``sessionid`` of a Django session signed in as ``user`` (needs database access)."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


class AdminClient:
    """GET and POST against ``base_url`` as one browser would, signed in as ``user`` (or anonymous)."""

    def __init__(self, base_url: str, user: Any = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self._csrf_input: str | None = None
        self.session_id = session_cookie(user) if user is not None else None
        if self.session_id is not None:
            self.jar.set_cookie(_cookie("sessionid", self.session_id, urlsplit(self.base_url).hostname or ""))

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        self._opener = urllib.request.build_opener(
            NoRedirect, urllib.request.HTTPCookieProcessor(self.jar), urllib.request.HTTPSHandler(context=insecure)
        )

    def _open(self, request: urllib.request.Request) -> tuple[int, dict[str, str], str]:
        try:
            with self._opener.open(request, timeout=TIMEOUT) as response:
                status, headers, body = response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as exc:
            status, headers, body = exc.code, dict(exc.headers), exc.read().decode("utf-8", "replace")
        found = _CSRF_INPUT.search(body)
        if found:
            self._csrf_input = found.group(1)
        return status, headers, body

    def get(self, path: str) -> tuple[int, dict[str, str], str]:
        return self._open(urllib.request.Request(self.base_url + path))

    def post(self, path: str, data: dict[str, Any], csrf: bool = True) -> tuple[int, dict[str, str], str]:
        """POST a form (list values become repeated fields), with the CSRF token of the last page."""
        fields = dict(data)
        if csrf:
            assert self._csrf_input is not None, "GET a page with a form before posting"
            fields["csrfmiddlewaretoken"] = self._csrf_input
        body = urlencode(fields, doseq=True).encode()
        request = urllib.request.Request(self.base_url + path, data=body, method="POST",
                                         headers={"Referer": self.base_url + path, "Origin": self.base_url})
        return self._open(request)

    def messages(self, path: str) -> list[tuple[str, str]]:
        """(level, text) of the admin messages on the page at ``path``."""
        _, _, body = self.get(path)
        return [(level, unescape(re.sub(r"<[^>]+>", "", text)).strip()) for level, text in _MESSAGE.findall(body)]


def _cookie(name: str, value: str, host: str) -> http.cookiejar.Cookie:
    return http.cookiejar.Cookie(
        version=0, name=name, value=value, port=None, port_specified=False, domain=host,
        domain_specified=False, domain_initial_dot=False, path="/", path_specified=True, secure=False,
        expires=None, discard=True, comment=None, comment_url=None, rest={},
    )

"""Builds the SessionRequest that app code sees from a Django request or a WebSocket scope.

Session-creating requests come two ways: the HTTP page/autoload request (a Django
``HttpRequest``) and the WebSocket upgrade (an ASGI scope, plus the token payload that
the page request put into the token).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from .security import filter_cookies, filter_headers
from .sessions import SessionRequest

if TYPE_CHECKING:
    from django.http import HttpRequest

__all__ = ("arguments_from_query", "from_http_request", "from_websocket_scope", "token_payload_for")

#: Query arguments that select sessions or configure autoload; they are not app arguments.
_BOKEH_ARGUMENTS = ("bokeh-",)


def arguments_from_query(query: str) -> dict[str, list[bytes]]:
    """Query arguments as Tornado gives them: name -> list of bytes, bokeh-* names left out."""
    parsed = parse_qs(query, keep_blank_values=True)
    return {
        name: [value.encode("utf-8") for value in values]
        for name, values in parsed.items()
        if not name.startswith(_BOKEH_ARGUMENTS)
    }


def _header_name(meta_key: str) -> str:
    return "-".join(part.capitalize() for part in meta_key.split("_"))


def _http_headers(request: HttpRequest) -> dict[str, str]:
    return {str(k): str(v) for k, v in request.headers.items()}


def from_http_request(request: HttpRequest, user: Any = None) -> SessionRequest:
    """The SessionRequest for a page or autoload.js request (headers and cookies filtered)."""
    return SessionRequest(
        arguments=arguments_from_query(request.META.get("QUERY_STRING", "")),
        cookies=filter_cookies(dict(request.COOKIES)),
        headers=filter_headers(_http_headers(request)),
        path=request.path,
        query=request.META.get("QUERY_STRING", ""),
        host=request.get_host(),
        protocol=request.scheme or "http",
        remote_ip=request.META.get("REMOTE_ADDR"),
        method=request.method or "GET",
        user=user,
    )


def token_payload_for(request: SessionRequest, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a page request puts into the session token, for a WebSocket on any process to read."""
    payload: dict[str, Any] = {
        "headers": dict(request.headers),
        "cookies": dict(request.cookies),
        "arguments": {k: [v.decode("utf-8", "replace") for v in vs] for k, vs in request.arguments.items()},
    }
    if extra:
        payload.update(extra)
    return payload


def _scope_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = _header_name(raw_name.decode("latin-1").replace("-", "_"))
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _scope_cookies(headers: Mapping[str, str]) -> dict[str, str]:
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("Cookie", ""))
    except Exception:
        return {}
    return {k: m.value for k, m in cookie.items()}


def from_websocket_scope(scope: Mapping[str, Any], token_payload: Mapping[str, Any], user: Any = None) -> SessionRequest:
    """The SessionRequest for a session created at WebSocket connect.

    Arguments, headers and cookies come from the token when the page request put them
    there (so they are the page's, even on another process); otherwise from the upgrade.
    """
    headers = _scope_headers(scope)
    query = scope.get("query_string", b"").decode("latin-1")
    if "arguments" in token_payload:
        arguments = {
            str(k): [_argument_bytes(v) for v in (vs if isinstance(vs, list) else [vs])]
            for k, vs in dict(token_payload["arguments"]).items()
        }
    else:
        arguments = arguments_from_query(query)
    token_headers = token_payload.get("headers")
    token_cookies = token_payload.get("cookies")
    client = scope.get("client") or (None, None)
    scheme = scope.get("scheme", "ws")
    return SessionRequest(
        arguments=arguments,
        cookies=dict(token_cookies) if isinstance(token_cookies, dict) else filter_cookies(_scope_cookies(headers)),
        headers=dict(token_headers) if isinstance(token_headers, dict) else filter_headers(headers),
        path=scope.get("path", ""),
        query=query,
        host=headers.get("Host", ""),
        protocol="https" if scheme == "wss" else "http",
        remote_ip=client[0],
        method="GET",
        user=user,
    )


def _argument_bytes(value: Any) -> bytes:
    """Token arguments are strings (ours) or {"bytes": base64} (bokeh's JSON encoding of bytes)."""
    if isinstance(value, dict) and "bytes" in value:
        return base64.b64decode(value["bytes"])
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")

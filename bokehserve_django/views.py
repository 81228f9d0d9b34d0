"""Serves the HTTP side of Bokeh apps: pages, autoload.js, metadata, app static files, the index.

Thin async views: they pick the session for the request, hand over to the session layer
and render with bokeh's embed helpers. No WebSocket code.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from bokeh.core.has_props import HasProps
from bokeh.core.templates import AUTOLOAD_JS
from bokeh.embed.bundle import Bundle, Script
from bokeh.embed.elements import html_page_for_render_items, script_for_render_items
from bokeh.embed.util import RenderItem
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.signals import setting_changed
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseForbidden,
    HttpResponseNotFound,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.loader import render_to_string
from django.views.static import serve

from . import bearer, panel, registry, security, signing
from .access import AccessRequest
from .auth import token_claims
from .cluster import PAGE_TOKEN_KEY, Where, ensure_started, locate, membership, request_page
from .conf import bokeh_settings
from .exceptions import (
    AppLoadError,
    AppNotRegistered,
    BearerTokenRefused,
    ComponentResourceNotFound,
    InvalidToken,
    SessionRefused,
    SessionsUnavailable,
)
from .extensions import bokeh_serve_static_file
from .requests import from_http_request, token_payload_for
from .resources import bundle_for, resources_for
from .sessions import BokehSession, runtime
from .urls_util import app_url

__all__ = ("app_page", "app_static", "autoload_js", "bokeh_static", "favicon", "index", "metadata", "render_page_for_session", "stats")

logger = logging.getLogger(__name__)


# Session selection ------------------------------------------------------------------


class _PageSession:
    """What bokeh's page helpers read from a session: its document, id and a token.

    ``owner`` is the channel of another process holding the session (cluster), or None.
    """

    def __init__(self, session: BokehSession | None, session_id: str, token: str, owner: str | None = None) -> None:
        self.document = session.document if session is not None else None
        self.id = session_id
        self.token = token
        self.owner = owner


class AccessDenied(Exception):
    """Raised when the request's user may not reach the app (``anonymous`` says whether to sign in)."""

    def __init__(self, anonymous: bool) -> None:
        super().__init__("sign-in required" if anonymous else "permission denied")
        self.anonymous = anonymous


async def check_access(request: HttpRequest, entry: registry.RegisteredApp) -> Any:
    """The request's user, if the app's access policy lets them in; AccessDenied otherwise."""
    # A headless client's Authorization: Bearer token, if any, decides (BearerTokenRefused if bad).
    user = await bearer.user_for_request(request, entry.name)
    if user is None:
        user = await request.auser() if hasattr(request, "auser") else None
    if entry.access.is_public:
        return user
    if not await sync_to_async(entry.access.allows_sync)(AccessRequest.for_http(request, entry.name, user)):
        anonymous = not getattr(user, "is_authenticated", False)
        logger.info(
            "Refused %s for app %r: %s (policy: %s)",
            request.path, entry.name, "not signed in" if anonymous else f"user {user.pk} lacks access",
            entry.access.description,
        )
        raise AccessDenied(anonymous)
    return user


async def open_session(request: HttpRequest, app_name: str, user: Any = None) -> _PageSession:
    """The session this request asks for, created if needed, and a fresh token for it.

    The id comes from ``?bokeh-session-id``, the ``Bokeh-Session-Id`` header (what
    ``server_session()`` sends), ``?bokeh-token``, or is generated; more than one is refused.
    """
    entry = registry.get_app(app_name)
    entry.check_loaded()
    session_id = request.GET.get("bokeh-session-id")
    header_id = request.headers.get("Bokeh-Session-Id")
    given_token = request.GET.get("bokeh-token")
    if sum(x is not None for x in (session_id, header_id, given_token)) > 1:
        raise SessionRefused("Give only one of bokeh-session-id, the Bokeh-Session-Id header and bokeh-token.")
    session_id = session_id or header_id
    session_request = from_http_request(request, user)
    if given_token is not None:
        info = signing.read_token(given_token)
        session_id, payload, token = info.session_id, info.payload, given_token
    else:
        if session_id is None:
            if not bokeh_settings.GENERATE_SESSION_IDS:
                raise SessionRefused("This server needs a bokeh-session-id; it does not generate session ids.")
            session_id = signing.generate_session_id()
        signing.check_session_id(session_id)
        await ensure_started()
        # The app's process_request runs in the app-code pool, where it may use the ORM.
        requested = await runtime.app(app_name).process_request(session_request, session_id)
        # PAGE_TOKEN_KEY: this token's session exists from now on; should it be gone when the
        # browser (re)connects, the page reloads instead of getting someone else's document.
        extra = {**requested, **token_claims(user), PAGE_TOKEN_KEY: True}
        payload = token_payload_for(session_request, extra)
        token, payload = signing.generate_token_with_payload(session_id, extra_payload=payload)
    await ensure_started()
    placement = await locate(app_name, session_id, must_exist=False)
    if placement.where is Where.RELAYED:
        return _PageSession(None, session_id, token, owner=placement.owner)
    session = await runtime.app(app_name).get_or_create(session_id, session_request, token, payload)
    return _PageSession(session, session_id, token)


def _already_logged(response: HttpResponse) -> HttpResponse:
    """Keep Django's request logger from logging ``response`` again: we logged one line that
    says why (Django's would add "Service Unavailable: /app" at ERROR, for a process that is
    draining or full as designed)."""
    response._has_been_logged = True  # read by django.utils.log.log_response
    return response


def _refusal(exc: Exception) -> HttpResponse:
    logger.warning("Refused session request: %s", exc)
    return _already_logged(HttpResponseForbidden(f"{exc}\n", content_type="text/plain; charset=utf-8"))


def _unavailable_page(request: HttpRequest, exc: SessionsUnavailable) -> HttpResponse:
    """503 with Retry-After: the page refreshes itself, and balancers may try another process."""
    logger.info("No session for %s right now: %s", request.path, exc.reason)
    context = {"reason": exc.reason, "retry_after": exc.retry_after}
    html = render_to_string("bokehserve_django/unavailable.html", context, request=request)
    response = HttpResponse(html, status=503)
    response["Retry-After"] = str(exc.retry_after)
    response["Cache-Control"] = "no-store"
    return _already_logged(response)


def _load_error_page(request: HttpRequest, exc: AppLoadError) -> HttpResponse:
    logger.error("Bokeh application %r failed:\n%s", exc.app_name, exc.details)
    context = {"app_name": exc.app_name, "details": exc.details if settings.DEBUG else None}
    html = render_to_string("bokehserve_django/app_error.html", context, request=request)
    return _already_logged(HttpResponse(html, status=500))


def _lookup(app_name: str) -> registry.RegisteredApp:
    try:
        return registry.get_app(app_name)
    except AppNotRegistered:
        raise Http404(f"No Bokeh application {app_name!r}") from None


# Views -------------------------------------------------------------------------------


async def app_page(request: HttpRequest, app_name: str) -> HttpResponse:
    """``/<app>``: bokeh's page for a new (or named) session, or the app's own template."""
    entry = _lookup(app_name)
    try:
        user = await check_access(request, entry)
        page_session = await open_session(request, app_name, user)
    except AccessDenied as exc:
        if exc.anonymous:
            return redirect_to_login(request.get_full_path())
        return HttpResponseForbidden("You do not have access to this application.\n", content_type="text/plain")
    except BearerTokenRefused as exc:
        return bearer.refusal_response(exc)
    except AppLoadError as exc:
        return _load_error_page(request, exc)
    except (InvalidToken, SessionRefused) as exc:
        return _refusal(exc)
    except SessionsUnavailable as exc:
        return _unavailable_page(request, exc)
    if page_session.owner is not None:
        status, html = await request_page(page_session.owner, app_name, page_session.id, page_session.token)
    else:
        status, html = 200, render_page(page_session)
    response = HttpResponse(html, status=status, content_type="text/html; charset=utf-8")
    # The page holds a session token: a reload or a restored tab must fetch a new page (with
    # a new session and token), never replay this one from the browser's cache.
    response["Cache-Control"] = "no-store"
    if status == 503:
        response["Retry-After"] = "1"  # asked again, a live process takes the session over
    return response


def render_page(page_session: Any) -> str:
    """bokeh's page for a session: BokehJS, the roots' divs, and the token to connect with.

    What bokeh's ``server_html_page_for_session`` does, with the bundle from ``bundle_for``
    (extensions from the site's static files). Panel apps get Panel's page instead (its
    template, theme and resources; docs/panel.md).
    """
    document = page_session.document
    if panel.is_panel_application(_application_of(document)):
        return panel.render_page(page_session, resources_for())
    render_item = RenderItem(token=page_session.token, roots=document.roots, use_for_title=True)
    return html_page_for_render_items(
        page_bundle(resources_for()),
        {},
        [render_item],
        document.title,
        template=document.template,
        template_variables=document.template_variables or {},
    )


#: At most this many bundles are kept (autoload.js asks for one per absolute URL it is given).
_BUNDLES_KEPT = 16
#: page_bundle's cache: inputs -> the bundle bokeh made from them, the latest last.
_bundles: dict[tuple[Any, ...], Bundle] = {}


def page_bundle(resources: Any) -> Bundle:
    """``bundle_for(resources)``, made once per resources and set of model classes; a copy.

    With no document given, bokeh bundles BokehJS and every extension model loaded (as bokeh
    serve does for its pages), so the bundle depends only on the resources and on the model
    classes: rebuilding it took ~5 ms of every page request. A model class defined or
    imported since (an app's custom model, a late extension) makes a new key; the cache is
    emptied when Django settings change (static files storage, URLs). Callers may change
    their copy (autoload.js adds its script).
    """
    if resources is None:
        return bundle_for(None)
    key = (
        type(resources), resources.mode, resources.minified, tuple(resources.components), resources.root_url,
        getattr(resources, "_server_url", None), tuple(map(id, HasProps.model_class_reverse_map.values())),
    )
    bundle = _bundles.pop(key, None)
    if bundle is None:
        bundle = bundle_for(resources)
        while len(_bundles) >= _BUNDLES_KEPT:
            del _bundles[next(iter(_bundles))]
    _bundles[key] = bundle
    return Bundle(bundle.js_files, bundle.js_raw, bundle.css_files, bundle.css_raw, bundle.hashes)


def _forget_bundles(**kwargs: Any) -> None:
    _bundles.clear()


setting_changed.connect(_forget_bundles, dispatch_uid="bokehserve_django.views.page_bundle")


def _application_of(document: Any) -> Any:
    """The Application whose session holds ``document`` (None for a document of no session)."""
    context = document.session_context
    app_sessions = getattr(getattr(context, "server_context", None), "application_context", None)
    return getattr(app_sessions, "application", None)


def render_page_for_session(session: BokehSession, token: str) -> str:
    """The page of a session this process holds, for a page request that landed on another process."""
    return render_page(_PageSession(session, session.id, token))


#: RFC 3986 characters of a path (pchar and "/"; "%" for percent-encoded octets).
_URL_PATH = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*")
#: RFC 3986 characters of a whole URL (unreserved, reserved and "%").
_URL_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")


def _bad_autoload_parameter(message: str) -> HttpResponse:
    return HttpResponseBadRequest(f"{message}\n", content_type="text/plain; charset=utf-8")


def _checked_app_path(value: str) -> str:
    """``bokeh-app-path`` if it is a URL path; ValueError (with what to send instead) otherwise.

    BokehJS appends it to the server's host to make the WebSocket URL, and bokeh's DOC_JS
    template writes it into the script between double quotes without escaping: anything
    but path characters could end the string there.
    """
    if not _URL_PATH.fullmatch(value):
        raise ValueError(
            "bokeh-app-path must be a URL path: '/' followed by letters, digits and -._~!$&'()*+,;=:@%/ "
            "only (percent-encode anything else), e.g. /myapp."
        )
    return value


def _checked_absolute_url(value: str) -> str:
    """``bokeh-absolute-url`` if it is an http(s) URL with a host; ValueError otherwise (see above)."""
    message = "bokeh-absolute-url must be an http(s) URL with a host, e.g. https://bokeh.example.com/myapp"
    if not _URL_CHARACTERS.fullmatch(value):
        raise ValueError(f"{message}, made of URL characters only (percent-encode anything else).")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number in 0-65535
    except ValueError:
        raise ValueError(f"{message}; this one does not parse.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{message}.")
    if "@" in parts.netloc:
        # The netloc goes into the URLs of BokehJS's scripts: no credentials there.
        raise ValueError(f"{message}, without a user name or password.")
    return value


def _js_string_body(value: str) -> str:
    """``value`` as the inside of a JSON string literal that is also safe inside HTML.

    bokeh's DOC_JS template supplies the surrounding double quotes itself. JSON escapes
    quotes, backslashes and control characters (and, ASCII-only, U+2028/U+2029, which end
    a line in older JavaScript); the HTML-sensitive characters become \\u escapes too, so
    the script stays inert when a page inlines it (as Django's json_script does).
    """
    literal = json.dumps(value, ensure_ascii=True)
    for char in "<>&'":
        literal = literal.replace(char, f"\\u{ord(char):04x}")
    return literal[1:-1]


def _cors(response: HttpResponse, request: HttpRequest) -> HttpResponse:
    """CORS for autoload.js: any page may load an app without credentials; only allowed
    origins may make credentialed requests.

    bokeh serve echoes every Origin with credentials allowed. Here the script holds a
    token that may be bound to the signed-in user, so another site must not be able to
    read a response made with the user's cookies.
    """
    origin = request.headers.get("Origin")
    response["Access-Control-Allow-Headers"] = "*"
    if origin and security.origin_allowed(origin):
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Credentials"] = "true"
        response["Vary"] = "Origin"
    else:
        response["Access-Control-Allow-Origin"] = "*"
    return response


async def autoload_js(request: HttpRequest, app_name: str) -> HttpResponse:
    """``/<app>/autoload.js``: the script behind ``server_document()``/``server_session()`` embeds."""
    entry = _lookup(app_name)
    if request.method == "OPTIONS":
        response = HttpResponse(status=200)
        response["Access-Control-Allow-Methods"] = "GET, OPTIONS"
        return _cors(response, request)
    element_id = request.GET.get("bokeh-autoload-element")
    if not element_id:
        return _cors(HttpResponseBadRequest("No bokeh-autoload-element query parameter\n"), request)
    absolute_url = request.GET.get("bokeh-absolute-url")
    server_url = None
    try:
        app_path = _checked_app_path(request.GET.get("bokeh-app-path", "/"))
        if absolute_url:
            parts = urlsplit(_checked_absolute_url(absolute_url))
            server_url = f"{parts.scheme}://{parts.netloc}"
    except ValueError as exc:
        return _cors(_bad_autoload_parameter(str(exc)), request)
    try:
        user = await check_access(request, entry)
        page_session = await open_session(request, app_name, user)
    except AccessDenied as exc:
        # Still a 403, but a script: bokeh's embed tag runs whatever autoload.js answers, so
        # the visitor sees a note where the app would be instead of a blank space.
        return _cors(_access_denied_js(request, element_id, exc), request)
    except BearerTokenRefused as exc:
        return _cors(bearer.refusal_response(exc), request)
    except AppLoadError as exc:
        return _cors(_load_error_page(request, exc), request)
    except (InvalidToken, SessionRefused) as exc:
        return _cors(_refusal(exc), request)
    except SessionsUnavailable as exc:
        return _cors(_unavailable_page(request, exc), request)
    resources = resources_for(server_url) if request.GET.get("resources") != "none" else None
    # script_for_render_items writes app_path and absolute_url between double quotes as they
    # are: hand it the inside of safe literals (checked by tests/security/test_autoload_params.py).
    element_literal = json.dumps(element_id)[1:-1]
    app_path_literal = _js_string_body(app_path)
    absolute_url_literal = _js_string_body(absolute_url) if absolute_url else None
    if resources is not None and panel.is_panel_application(_application_of(page_session.document)):
        js = panel.render_autoload(page_session, resources, element_id, app_path_literal, absolute_url_literal)
    else:
        bundle = page_bundle(resources)
        render_items = [RenderItem(token=page_session.token, elementid=element_id, use_for_title=False)]
        script = script_for_render_items({}, render_items, app_path=app_path_literal, absolute_url=absolute_url_literal)
        bundle.add(Script(script))
        js = AUTOLOAD_JS.render(bundle=bundle, elementid=element_literal)
    response = HttpResponse(js, content_type="application/javascript; charset=utf-8")
    response["Cache-Control"] = "no-store"  # it holds a session token, as the page does
    return _cors(response, request)


async def metadata(request: HttpRequest, app_name: str) -> JsonResponse:
    """``/<app>/metadata``: the app URL and its Application(metadata=...)."""
    entry = _lookup(app_name)
    try:
        await check_access(request, entry)
    except AccessDenied as exc:
        return JsonResponse({"error": f"access denied: {exc}"}, status=403)
    except BearerTokenRefused as exc:
        return bearer.refusal_response(exc)
    try:
        application = entry.check_loaded()
    except AppLoadError:
        return JsonResponse({"url": app_url(app_name), "error": "application failed to load"}, status=500)
    data: Any = application.metadata
    if callable(data):
        data = data()
    return JsonResponse({"url": app_url(app_name), "data": data if data is not None else {}})


def _static_file_path(root: str, path: str) -> str | None:
    """``path`` relative to ``root`` if it names a regular file inside ``root``; None otherwise.

    The path arrives percent-decoded once (``%2e%2e%2f`` is ``../`` here, ``%252e`` stays
    ``%2e``). As in Django's ``serve`` and bokeh serve, a leading ``/`` is dropped and ``..``
    may not climb above ``root``; symlinks that the app's author put inside are followed.
    """
    if "\x00" in path:
        return None
    relative = posixpath.normpath(path).lstrip("/")
    root = os.path.abspath(root)
    candidate = os.path.abspath(os.path.join(root, relative))
    if os.path.commonpath([root, candidate]) != root or not os.path.isfile(candidate):
        return None
    return relative


def _no_static_file() -> HttpResponse:
    # The same short answer for a missing file and for one outside the folder: it says
    # nothing about the file system, and, unlike raising Http404 or letting Django's serve
    # raise SuspiciousFileOperation (a 400), shows no debug page under DEBUG.
    return HttpResponseNotFound("No such static file.\n", content_type="text/plain; charset=utf-8")


def app_static(request: HttpRequest, app_name: str, path: str) -> HttpResponse:
    """``/<app>/static/<path>``: files from a directory app's ``static/`` folder (404 for anything else)."""
    try:
        root = registry.get_app(app_name).static_path
    except AppNotRegistered:
        return _no_static_file()
    if root is None or not os.path.isdir(root):
        return _no_static_file()
    relative = _static_file_path(root, path)
    if relative is None:
        return _no_static_file()
    try:
        return serve(request, relative, document_root=root)
    except (Http404, OSError):
        return _no_static_file()  # removed or made unreadable since the check above


def bokeh_static(request: HttpRequest, path: str) -> HttpResponse:
    """``/static/<path>`` under the prefix: BokehJS and extension files in bokeh serve's layout.

    Our own pages load these from the site's static files (STATIC_URL). This answers code
    that builds bokeh serve's URLs itself: Panel writes ``static/extensions/panel/...``
    relative to the page into its pages and models. Where STATIC_URL is that same
    ``<prefix>/static/``, the static files handler (or nginx) answers first, from the same
    ``extensions/<package>/`` layout.
    """
    where = bokeh_serve_static_file(path)
    if where is None:
        return _no_static_file()
    root, inner = where
    relative = _static_file_path(str(root), inner)
    if relative is None:
        return _no_static_file()
    try:
        response = serve(request, relative, document_root=str(root))
    except (Http404, OSError):
        return _no_static_file()
    # The files change only when a package is upgraded; bokeh's URLs then carry a new ?v=.
    response["Cache-Control"] = "max-age=3600"
    return response


def panel_component_resource(request: HttpRequest, path: str) -> HttpResponse:
    """``/components/<module>/<Class>/<attribute>/<file>``: a file a custom Panel component lists.

    As ``panel serve`` answers it (bokehserve_django/panel/components.py); 404 without Panel.
    """
    try:
        found = panel.component_resource_file(path)
    except ComponentResourceNotFound as exc:
        return HttpResponse(f"{exc.reason}\n", status=exc.status, content_type="text/plain; charset=utf-8")
    if found is None or not os.path.isfile(found):
        return _no_static_file()
    directory, filename = os.path.split(found)
    try:
        response = serve(request, filename, document_root=directory)
    except (Http404, OSError):
        return _no_static_file()
    response["Cache-Control"] = "no-cache"  # the component's file may change with the app's code
    return response


def index(request: HttpRequest) -> HttpResponse:
    """The index at the prefix root: a list of apps, or a redirect when there is just one."""
    if bokeh_settings.DISABLE_INDEX:
        raise Http404("The index is disabled")
    names = sorted(registry.registered_apps())
    if len(names) == 1 and not bokeh_settings.DISABLE_INDEX_REDIRECT:
        return HttpResponseRedirect(app_url(names[0]))
    titles = bokeh_settings.INDEX_TITLES
    items = [(titles.get(name, name), app_url(name)) for name in names]
    template_path = bokeh_settings.INDEX_TEMPLATE
    if template_path:
        from jinja2 import Environment, FileSystemLoader, select_autoescape

        directory, filename = os.path.split(os.path.abspath(template_path))
        env = Environment(loader=FileSystemLoader(directory), autoescape=select_autoescape())
        prefix = "/" + bokeh_settings.prefix if bokeh_settings.prefix else ""
        # Same variables as bokeh serve's --index templates: items are "/<name>".
        html = env.get_template(filename).render(prefix=prefix, items=[f"/{name}" for name in names])
        return HttpResponse(html)
    return HttpResponse(render_to_string("bokehserve_django/index.html", {"apps": items}, request=request))


def favicon(request: HttpRequest) -> HttpResponse:
    """``/favicon.ico``: Bokeh's icon, as bokeh serve answers it (pages ask for it)."""
    from bokeh.settings import settings as bokeh_env_settings

    with open(bokeh_env_settings.ico_path(), "rb") as icon:
        response = HttpResponse(icon.read(), content_type="image/x-icon")
    response["Cache-Control"] = "max-age=86400"
    return response


async def stats(request: HttpRequest) -> HttpResponse:
    """Staff only: live sessions and connections per app, per process and for the whole cluster."""
    user = await request.auser()
    if not (getattr(user, "is_active", False) and getattr(user, "is_staff", False)):
        if not getattr(user, "is_authenticated", False):
            return redirect_to_login(request.get_full_path())
        return HttpResponseForbidden("Staff only.\n", content_type="text/plain")
    processes = await membership.process_stats()
    totals: dict[str, dict[str, int]] = {}
    for process in processes:
        for name, counts in process["apps"].items():
            total = totals.setdefault(name, {"sessions": 0, "connections": 0, "created": 0, "destroyed": 0})
            for key in total:
                total[key] += counts.get(key, 0)
    if request.GET.get("format") == "json" or "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"processes": processes, "totals": totals})
    context = {"processes": processes, "totals": sorted(totals.items()), "distributed": membership.distributed}
    return HttpResponse(render_to_string("bokehserve_django/stats.html", context, request=request))


_ACCESS_DENIED_JS = """\
// Access denied: {reason}
(function () {{
  var element = document.getElementById({element_id});
  if (element == null) {{
    console.warn("Bokeh: autoload.js found no element with id " + {element_id});
    return;
  }}
  var note = document.createElement("div");
  note.className = "bokehserve-access-denied";
  note.appendChild(document.createTextNode({text}));
  var login = {login_url};
  if (login) {{
    var link = document.createElement("a");
    link.href = login + (login.indexOf("?") < 0 ? "?" : "&") + {next_field} + "=" + encodeURIComponent(window.location.href);
    link.appendChild(document.createTextNode("Sign in"));
    note.appendChild(document.createTextNode(" "));
    note.appendChild(link);
  }}
  // The embed tag's element is its <script>: the app would appear right after it.
  if (element.tagName === "SCRIPT") {{
    element.parentNode.insertBefore(note, element.nextSibling);
  }} else {{
    element.appendChild(note);
  }}
}})();
"""


def _js_string(value: str) -> str:
    """``value`` as a JavaScript string literal that is also safe inside an HTML <script>."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _access_denied_js(request: HttpRequest, element_id: str, exc: AccessDenied) -> HttpResponse:
    """autoload.js's 403: a script that writes "Sign in to see this application" (or "no access")
    into the embed's place, with a link to LOGIN_URL for anonymous visitors. The element id and
    every text go in as escaped string literals and are inserted as text nodes, never as HTML."""
    from django.contrib.auth import REDIRECT_FIELD_NAME
    from django.shortcuts import resolve_url

    if exc.anonymous:
        text = "Sign in to see this application."
        # Absolute: the embedding page may be on another origin than this server.
        login_url = _js_string(request.build_absolute_uri(resolve_url(settings.LOGIN_URL)))
    else:
        text, login_url = "You do not have access to this application.", "null"
    js = _ACCESS_DENIED_JS.format(
        reason=exc,
        element_id=_js_string(element_id),
        text=_js_string(text),
        login_url=login_url,
        next_field=_js_string(REDIRECT_FIELD_NAME),
    )
    return HttpResponseForbidden(js, content_type="application/javascript; charset=utf-8")

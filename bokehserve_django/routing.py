"""WebSocket URL patterns for the registered Bokeh apps, and the ASGI app that serves them.

A site's asgi.py::

    from bokehserve_django.routing import bokeh_asgi_application
    application = bokeh_asgi_application()   # Django HTTP + the Bokeh WebSockets

or, to combine with its own consumers, include ``websocket_urlpatterns`` in its own
``URLRouter`` (behind ``SessionAuthMiddleware`` or Channels' ``AuthMiddlewareStack``, for
the Django user). The consumers and views start the process's Bokeh serving themselves, so
the cluster, broadcasts and sign-outs work either way; under daphne (runbokeh,
``python -m bokehserve_django.daphne``) shutdown hooks run either way too. Under uvicorn or
hypercorn, wrap the site's router in ``LifecycleMiddleware`` so that lifespan shutdown
drains the process (check ``bokehserve_django.W006`` says so). A site's own router also
wraps itself in ``probes.ProbesMiddleware`` to answer ``/healthz`` and ``/readyz``,
and in ``metrics.MetricsMiddleware`` to answer ``/metrics``.
"""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path, re_path

from .conf import bokeh_settings
from .consumers import BokehConsumer, NotFoundConsumer

__all__ = ("SessionAuthMiddleware", "bokeh_asgi_application", "websocket_urlpatterns")

_prefix = bokeh_settings.prefix
# Any name: the consumer itself refuses unknown apps with a 403 and a log line.
websocket_urlpatterns = [
    path(f"{_prefix}/<path:app_name>/ws" if _prefix else "<path:app_name>/ws", BokehConsumer.as_asgi()),
]


class SessionAuthMiddleware:
    """Channels' AuthMiddlewareStack, skipped for upgrades without a Django session cookie.

    Resolving the user always hops to a database thread; embeds on other sites, bokeh.client
    and anonymous visitors carry no session cookie, so they get AnonymousUser at once.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.with_auth = AuthMiddlewareStack(inner)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        from django.conf import settings
        from django.contrib.auth.models import AnonymousUser

        cookie_name = settings.SESSION_COOKIE_NAME.encode("latin-1")
        cookies = b"; ".join(value for name, value in scope.get("headers", []) if name == b"cookie")
        if cookie_name + b"=" in cookies:
            return await self.with_auth(scope, receive, send)
        # Set in place, not in a copy: the copy would live as long as the WebSocket, and the
        # URLRouter inside makes its own copy of the scope anyway.
        scope["user"] = AnonymousUser()
        return await self.inner(scope, receive, send)


def bokeh_asgi_application(http_application: Any = None) -> ProtocolTypeRouter:
    """Django's HTTP app plus the Bokeh WebSockets behind Channels' auth middleware.

    Origins and hosts are checked by the consumer itself (so refusals name the setting
    to change); Channels' auth middleware puts the Django user into the scope. Without an
    ``http_application``, Django's requests go through ``handlers.BokehASGIHandler``.
    """
    if http_application is None:
        from .handlers import get_asgi_application

        http_application = get_asgi_application()
    from .cluster import LifecycleMiddleware
    from .metrics import MetricsMiddleware
    from .probes import ProbesMiddleware

    return LifecycleMiddleware(
        MetricsMiddleware(
            ProbesMiddleware(
                ProtocolTypeRouter(
                    {
                        "http": http_application,
                        "websocket": SessionAuthMiddleware(
                            URLRouter([*websocket_urlpatterns, re_path(r"", NotFoundConsumer.as_asgi())])
                        ),
                    }
                )
            )
        )
    )

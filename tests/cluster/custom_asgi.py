"""A site's own ASGI router, as docs/cluster.md allows: Channels' ProtocolTypeRouter with the Bokeh
WebSocket routes in its own URLRouter behind Channels' AuthMiddlewareStack, and neither
``bokeh_asgi_application`` nor ``LifecycleMiddleware``. Bokeh serving must start lazily from
the views and the consumer, and stop on SIGTERM under daphne, all the same.

Used through tests/cluster/custom_settings.py (ASGI_APPLICATION points here).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.cluster.custom_settings")
django_application = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

import bokehserve_django.routing  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": AuthMiddlewareStack(URLRouter(bokehserve_django.routing.websocket_urlpatterns)),
    }
)

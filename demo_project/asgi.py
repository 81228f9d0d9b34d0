"""ASGI entry point of the demo site: Django HTTP plus the Bokeh WebSockets."""

import os

from bokehserve_django.handlers import get_asgi_application  # Django's, with fewer thread trips

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
django_application = get_asgi_application()

from bokehserve_django.routing import bokeh_asgi_application  # noqa: E402  (needs Django set up)

application = bokeh_asgi_application(django_application)

import os

from bokehserve_django.handlers import get_asgi_application  # Django's, with fewer thread trips

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django_application = get_asgi_application()

from bokehserve_django.routing import bokeh_asgi_application  # noqa: E402

application = bokeh_asgi_application(django_application)

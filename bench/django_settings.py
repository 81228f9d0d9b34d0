"""Django settings for benchmarking runbokeh: the demo site, minus the demo's Bokeh apps.

``bokeh serve <app>`` serves one app, so runbokeh serves only the app given on its command
line. Everything else (middleware, channel layer, session signing, logging) is the demo
site's. DEBUG comes from DJANGO_DEBUG, which bench/run.py sets to 0 unless --django-debug.
"""

from demo_project.settings import *  # noqa: F403
from demo_project.settings import BOKEHSERVE

BOKEHSERVE = {**BOKEHSERVE, "APPS": {}}

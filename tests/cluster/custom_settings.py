"""The cluster test settings with the site's own ASGI router (tests/cluster/custom_asgi.py)."""

from tests.cluster.settings import *  # noqa: F403

ASGI_APPLICATION = "tests.cluster.custom_asgi.application"

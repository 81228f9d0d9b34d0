"""Settings of the cluster tests: tests.settings plus the Redis channel layer at $REDIS_URL.

Every runbokeh process of a test cluster and the test process itself (for broadcast.send)
use these channel layer settings. Behind the tests' nginx, as in docs/cluster.md:
SECURE_PROXY_SSL_HEADER, origins on any local port, static files from collectstatic.
"""

import os
from pathlib import Path

from tests.settings import *  # noqa: F403
from tests.settings import BOKEHSERVE, DEBUG  # noqa: F401

CLUSTER_APPS = Path(__file__).resolve().parent / "apps"


def channel_layers(redis_url: str) -> dict:
    """channels_redis at ``redis_url``, with room for relayed traffic.

    capacity: messages one channel may hold; every relayed client of a process shares that
    process's channel, so the default (100) is too small for a busy process. expiry: seconds
    an unread message lives (a relayed frame older than that is lost, so keep it generous).
    """
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py >= 8 reads with a 5 s socket timeout by default, as long as
                # channels_redis's blocking receive (BZPOPMIN, 5 s): every idle consumer would
                # die with a TimeoutError (WebSocket closed 1011). Allow longer reads.
                "hosts": [{"address": redis_url, "socket_timeout": 15}],
                "capacity": 5000,
                "expiry": 60,
                "group_expiry": 86400,
            },
        }
    }


CHANNEL_LAYERS = channel_layers(os.environ["REDIS_URL"])

ROOT_URLCONF = "tests.cluster.urls"

# Behind nginx (tests/cluster/conftest.py renders docs/deploy/nginx.conf): SSL terminates there.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
STATIC_ROOT = os.environ.get("BOKEHSERVE_TEST_STATIC_ROOT", "/tmp/bokehserve-cluster-static")

BOKEHSERVE = {
    **BOKEHSERVE,
    "APPS": {
        **BOKEHSERVE["APPS"],
        "broadcast": CLUSTER_APPS / "broadcast.py",
        "slow": CLUSTER_APPS / "slow.py",
        "blocking": CLUSTER_APPS / "blocking.py",
    },
    # Pages come through nginx's port or straight from one process: any local port.
    "ALLOWED_ORIGINS": ["127.0.0.1:*", "localhost:*"],
    "SIGN_SESSIONS": False,
}

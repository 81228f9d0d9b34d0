"""Django settings for the cluster bench (bench/cluster.py): bench.django_settings on Redis.

The same site as bench/run.py measures (the demo site serving only the app on runbokeh's
command line), with the channels_redis layer at $REDIS_URL configured as docs/cluster.md
recommends: ``socket_timeout`` above channels_redis's 5 s blocking receive (redis-py >= 8),
and ``capacity`` 1000 since every relayed client of a process shares its process channel.
"""

import os

from bench.django_settings import *  # noqa: F403

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": os.environ["REDIS_URL"], "socket_timeout": 15}],
            "capacity": 1000,
            "expiry": 60,
        },
    }
}

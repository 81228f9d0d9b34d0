"""Settings of tests/cluster/test_sentinel.py: the cluster settings, with the channel layer (and
so the cluster's own Redis clients) on a Redis Sentinel instead of one redis-server.

BOKEHSERVE_TEST_SENTINELS: "host:port,host:port" of the Sentinels;
BOKEHSERVE_TEST_MASTER_NAME: the monitored master's name (default "mymaster").
"""

import os

os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:1/0")  # tests.cluster.settings reads it; replaced below

from tests.cluster.settings import *  # noqa: F403
from tests.cluster.settings import channel_layers

SENTINELS = [
    (host, int(port))
    for host, _, port in (entry.rpartition(":") for entry in os.environ["BOKEHSERVE_TEST_SENTINELS"].split(","))
]
MASTER_NAME = os.environ.get("BOKEHSERVE_TEST_MASTER_NAME", "mymaster")

CHANNEL_LAYERS = channel_layers("unused")
# The documented Sentinel entry (docs/cluster.md): channels_redis's own format. socket_timeout
# as for a URL: longer than channels_redis's 5 s blocking receive.
CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [
    {"master_name": MASTER_NAME, "sentinels": SENTINELS, "socket_timeout": 15}
]

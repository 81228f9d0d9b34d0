"""Sends events from Django code to live Bokeh sessions, in every process (the public API).

See ``bokehserve_django.cluster.broadcast`` and docs/cluster.md.
"""

from .cluster.broadcast import asend, send, subscribe, unsubscribe

__all__ = ("asend", "send", "subscribe", "unsubscribe")

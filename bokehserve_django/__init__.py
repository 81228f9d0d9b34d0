"""Serve Bokeh applications from a Django site (see README.md)."""

__version__ = "0.1.0"

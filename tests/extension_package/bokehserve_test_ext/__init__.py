"""A Bokeh extension package for the tests: one model, ``Shout``, whose JavaScript is in dist/."""

from .shout import Shout

__all__ = ("Shout",)

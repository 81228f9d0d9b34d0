"""daphne's command line with BokehDaphneServer: ``python -m bokehserve_django.daphne project.asgi:application``.

Takes every daphne option (``--port``, ``--bind``, ``-u``, ``--fd``, ``--proxy-headers``,
``--websocket_timeout``...). Set ``--websocket_timeout -1`` for Bokeh sessions that stay
open for days, and see docs/deploy/ for the rest.
"""

from __future__ import annotations

from daphne.cli import CommandLineInterface

from .server import BokehDaphneServer

__all__ = ("BokehCommandLineInterface", "main")


class BokehCommandLineInterface(CommandLineInterface):
    server_class = BokehDaphneServer


def main() -> None:
    BokehCommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()

"""daphne's command line with BokehDaphneServer: ``python -m bokehserve_django.daphne project.asgi:application``.

Takes every daphne option (``--port``, ``--bind``, ``-u``, ``--fd``, ``--proxy-headers``...),
with Bokeh-friendly defaults: no WebSocket lifetime limit, 20 MiB messages (as bokeh
serve), a 30 s connect timeout. See docs/deploy.md.
"""

from __future__ import annotations

from daphne.cli import CommandLineInterface

from .server import BokehDaphneServer

__all__ = ("BokehCommandLineInterface", "main")


#: bokeh serve's default message limit; daphne's own 1 MiB refuses ordinary binary updates.
DEFAULT_MAX_MESSAGE_SIZE = 20 * 1024 * 1024


class BokehCommandLineInterface(CommandLineInterface):
    """daphne's CLI with defaults that suit Bokeh sessions (every one can still be overridden)."""

    server_class = BokehDaphneServer

    def __init__(self) -> None:
        super().__init__()
        self.parser.set_defaults(
            websocket_timeout=-1,  # daphne closes WebSockets after a day by default
            websocket_max_message_size=DEFAULT_MAX_MESSAGE_SIZE,
            websocket_max_frame_size=DEFAULT_MAX_MESSAGE_SIZE,
            websocket_connect_timeout=30,
        )


def main() -> None:
    BokehCommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()

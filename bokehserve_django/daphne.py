"""daphne's command line with BokehDaphneServer: ``python -m bokehserve_django.daphne project.asgi:application``.

Takes every daphne option (``--port``, ``--bind``, ``-u``, ``--fd``, ``--proxy-headers``...),
with Bokeh-friendly defaults: no WebSocket lifetime limit, 20 MiB messages (as bokeh
serve), a 30 s connect timeout; and ``--drain-timeout SECONDS`` (as runbokeh's), how long
SIGTERM waits for live sessions. See docs/deploy.md.
"""

from __future__ import annotations

import json
import os
from typing import Any

from daphne.cli import CommandLineInterface

from .conf import OVERRIDES_ENV
from .server import BokehDaphneServer, add_drain_timeout_argument

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
        add_drain_timeout_argument(self.parser)

    def run(self, args: list[str]) -> Any:
        # daphne's run() parses again and ignores the option; it only has to become the
        # DRAIN_TIMEOUT override (as runbokeh's flags do) before the application is imported.
        drain_timeout = self.parser.parse_args(args).drain_timeout
        if drain_timeout is not None:
            overrides = json.loads(os.environ.get(OVERRIDES_ENV) or "{}")
            overrides["DRAIN_TIMEOUT"] = drain_timeout
            os.environ[OVERRIDES_ENV] = json.dumps(overrides)
        return super().run(args)


def main() -> None:
    BokehCommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()

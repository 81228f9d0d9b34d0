"""widget.py, plus one line on stdout per run of the app code: which process built which session.

bench/procs.py serves this under two processes. bokeh serve builds a session where its page is
requested, and again, from the token, in the other process if the WebSocket lands there; runbokeh
builds it once and relays a WebSocket that lands elsewhere. The line lets the bench count, per
session, how many processes ran the app code, the same way under both servers.
"""

import os
import runpy
from pathlib import Path

from bokeh.io import curdoc

_context = curdoc().session_context
# One write(2) per line: print() writes the line and its newline separately, and lines from
# sessions built at the same time in other threads would interleave.
os.write(1, f"bench-app-run pid={os.getpid()} session={_context.id if _context else '-'}\n".encode())

runpy.run_path(str(Path(__file__).with_name("widget.py")))

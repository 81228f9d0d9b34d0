"""One session's app code never writes into another session's document.

Sessions of different users are opened at the same moment (several browsers loading a page).
Each document must hold exactly what its own app run put there: a user's personalised
document must never receive another session's models, and no session may fail because
another one was being created.

(Found while writing these tests: app code ran in a 4-thread pool while bokeh's curdoc()
override stack, sys.path/argv/cwd and the handler's error state are process-wide; fixed in
434ff97 with a per-thread curdoc stack and one app-code thread. This is its regression test.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from bokeh.util.token import get_session_id
from django.test import AsyncClient

from bokehserve_django.sessions import runtime
from tests.security.helpers import token_in

APP_FILE = Path(__file__).resolve().parent / "apps" / "whose_doc.py"
CONCURRENT = 4


@pytest.mark.django_db(transaction=True)
async def test_concurrent_sessions_get_their_own_documents(security_settings, fresh_runtime) -> None:
    security_settings.BOKEHSERVE = {**security_settings.BOKEHSERVE,
                                    "APPS": {**security_settings.BOKEHSERVE["APPS"], "whose_doc": APP_FILE}}
    responses = await asyncio.gather(*(AsyncClient().get("/whose_doc") for _ in range(CONCURRENT)))
    statuses = [r.status_code for r in responses]
    assert statuses == [200] * CONCURRENT, (
        f"{CONCURRENT} sessions opened at once gave {statuses}: app code of concurrent sessions ran in "
        "parallel threads sharing bokeh's process-global curdoc() stack (and sys.path/argv/cwd and the "
        "handler's error state), so one session's curdoc() returned another session's document"
    )
    ids = {get_session_id(token_in(r.content.decode())) for r in responses}
    contents = {
        session.id: [getattr(root, "text", type(root).__name__) for root in session.document.roots]
        for session in runtime.app("whose_doc").sessions
    }
    assert contents == {session_id: [session_id] for session_id in ids}

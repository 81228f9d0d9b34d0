"""Panel's session lifecycle under our sessions: pn.state's request data, its session hooks,
and a teardown that runs Panel's whole cleanup without an error."""

from __future__ import annotations

import logging

import pytest

pn = pytest.importorskip("panel")

from panel.io.state import state  # noqa: E402

from bokehserve_django.sessions import runtime  # noqa: E402
from tests.panel.helpers import PanelPage, has_text, texts  # noqa: E402

pytestmark = pytest.mark.usefixtures("panel_apps")


def session_of(app: str):
    (session,) = runtime.app(app).sessions
    return session


async def test_pn_state_sees_the_request_that_opened_the_session() -> None:
    page = await PanelPage.open("request_info", "?color=red&color=blue&size=3")
    try:
        assert has_text("args: [('color', ['red', 'blue']), ('size', ['3'])]")(page.document), texts(page.document)
        assert has_text("location: testserver|/request_info|?color=red and color=blue and size=3")(page.document), texts(
            page.document
        )
        assert has_text("agent: panel-test-agent")(page.document)
        assert has_text("base_url: /")(page.document)
        assert has_text("rel_path: ''")(page.document)
    finally:
        await page.close()


async def test_session_hooks_of_pn_state_run_with_our_session_context(tmp_path, monkeypatch) -> None:
    log = tmp_path / "hooks.log"
    monkeypatch.setenv("BOKEHSERVE_TEST_HOOK_LOG", str(log))
    created: list[str] = []
    pn.state.on_session_created(lambda context: created.append(context.id))
    try:
        page = await PanelPage.open("lifecycle")
        await page.close()
    finally:
        state._on_session_created.clear()
    session = session_of("lifecycle")
    assert created == [session.id]
    assert has_text(f"created for {session.id}")(page.document)
    await runtime.app("lifecycle").discard(session)
    assert log.read_text() == f"panel-destroyed {session.id}\n"


@pytest.mark.parametrize("app", ["template", "periodic", "tabulator", "request_info"])
async def test_a_session_ends_with_panel_s_cleanup_done_and_no_error(app, caplog) -> None:
    page = await PanelPage.open(app)
    await page.document_ready()
    await page.close()
    session = session_of(app)
    document = session.document
    assert document in state._locations
    with caplog.at_level(logging.INFO):
        assert await runtime.app(app).discard(session)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    # Panel's own session-destroyed callbacks ran (its log line), and it let go of the document.
    assert any(r.name == "panel.io.application" and "destroyed" in r.getMessage() for r in caplog.records)
    for registry_of_documents in (state._locations, state._templates, state._periodic, state._onload):
        assert document not in registry_of_documents

"""A protected embed shows anonymous visitors a sign-in note instead of a blank space.

bokeh's embed tag (``server_document``, our ``{% bokeh_app %}``) fetches autoload.js with an
XHR and runs whatever comes back, whatever the status: the 403 is a script that writes the
note, with a link to LOGIN_URL, next to the tag.
"""

from __future__ import annotations

import pytest
from bokeh.embed import server_document

from tests.live import LiveServer
from tests.security.helpers import client_for

HOSTILE_ID = '</script><img src=x onerror=alert(1)>"\\'


@pytest.mark.django_db(transaction=True)
async def test_anonymous_autoload_is_a_403_script_with_a_sign_in_link(users, fresh_runtime) -> None:
    client = await client_for(users["anonymous"])
    response = await client.get("/login/autoload.js", {"bokeh-autoload-element": HOSTILE_ID})
    assert response.status_code == 403
    assert response["Content-Type"].startswith("application/javascript")
    js = response.content.decode()
    assert "Sign in to see this application." in js
    assert '"http://testserver/accounts/login/"' in js
    # The element id is a string literal only: no markup, no way out of the literal.
    assert "<img" not in js and "</script>" not in js
    assert '"\\u003c/script\\u003e\\u003cimg src=x onerror=alert(1)\\u003e\\"\\\\"' in js


@pytest.mark.django_db(transaction=True)
async def test_signed_in_without_access_gets_a_note_and_no_link(users, fresh_runtime) -> None:
    client = await client_for(users["bob"])
    response = await client.get("/perm/autoload.js", {"bokeh-autoload-element": "x"})
    assert response.status_code == 403
    js = response.content.decode()
    assert "You do not have access to this application." in js
    assert "var login = null;" in js


@pytest.mark.browser
def test_the_note_appears_in_the_embeds_place() -> None:
    from tests.browser.helpers import chromium

    live = LiveServer(settings="tests.security.settings")
    try:
        with chromium() as browser:
            page = browser.new_page()
            page.goto(live.url + "/public")  # any page of the server's origin to host the embed
            page.set_content(f"<html><body><p>before</p>{server_document(live.url + '/login')}<p>after</p></body></html>")
            note = page.locator(".bokehserve-access-denied")
            note.wait_for(timeout=15_000)
            assert note.inner_text() == "Sign in to see this application. Sign in"
            href = note.locator("a").get_attribute("href")
            assert href.startswith(f"{live.url}/accounts/login/?next=")
            # Where the app would have been: right after the embed's <script>, between the paragraphs.
            order = page.evaluate("() => [...document.body.children].map(e => e.tagName + '.' + e.className)")
            assert order.index("DIV.bokehserve-access-denied") == order.index("P.") + 2
    finally:
        live.stop()

"""Shows what process_request put into the token; a document callback writes to the ORM when the session ends."""

from bokeh.io import curdoc
from bokeh.models import Div
from django.contrib.auth.models import Group

doc = curdoc()
payload = doc.session_context.token_payload
doc.add_root(Div(text=f"users_seen={payload.get('users_seen')}", name="payload"))


def on_document_destroyed(session_context):
    Group.objects.get_or_create(name=f"orm_hooks document_on_session_destroyed {session_context.id}")


doc.on_session_destroyed(on_document_destroyed)

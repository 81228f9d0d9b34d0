"""Test app: shows the Django user of its session, and runs an ORM query in a callback."""

from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import Div, TextInput
from django.contrib.auth import get_user_model

from bokehserve_django.callbacks import run_in_thread

doc = curdoc()
user = doc.session_context.user
who = Div(name="user", text=getattr(user, "username", "") or "anonymous")
# App code runs in a worker thread: the ORM works here directly.
users_at_start = Div(name="users_at_start", text=str(get_user_model().objects.count()))
lookup = TextInput(name="lookup", value="")
found = Div(name="found", text="")


@run_in_thread
def look_up(attr, old, new):
    # A callback runs on the event loop, where the sync ORM is refused; run_in_thread
    # moves it to a worker thread, under the document lock.
    exists = get_user_model().objects.filter(username=new).exists()
    found.text = f"{new}: {'exists' if exists else 'unknown'}"


lookup.on_change("value", look_up)
doc.add_root(column(who, users_at_start, lookup, found))

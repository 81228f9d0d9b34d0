"""Sync lifecycle hooks that write to the database with the Django ORM (tests/integration/test_hooks_orm.py).

Each hook creates a ``Group`` named "<app> <hook> <session id or ->"; the test reads them back.
"""

from django.contrib.auth.models import Group


def mark(hook, session_id="-"):
    Group.objects.get_or_create(name=f"orm_hooks {hook} {session_id}")


def on_server_loaded(server_context):
    mark("on_server_loaded")


def on_server_unloaded(server_context):
    mark("on_server_unloaded")


def on_session_created(session_context):
    mark("on_session_created", session_context.id)


def on_session_destroyed(session_context):
    mark("on_session_destroyed", session_context.id)

"""``async def`` lifecycle hooks that write with Django's async ORM API (tests/integration/test_hooks_orm.py)."""

from django.contrib.auth.models import Group


async def mark(hook, session_id="-"):
    await Group.objects.aget_or_create(name=f"orm_hooks_async {hook} {session_id}")


async def on_server_loaded(server_context):
    await mark("on_server_loaded")


async def on_server_unloaded(server_context):
    await mark("on_server_unloaded")


async def on_session_created(session_context):
    await mark("on_session_created", session_context.id)


async def on_session_destroyed(session_context):
    await mark("on_session_destroyed", session_context.id)

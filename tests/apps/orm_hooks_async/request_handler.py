"""An ``async def`` process_request using Django's async ORM API; its answer goes into the token."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group


async def process_request(request):
    tag = request.arguments.get("tag", [b"-"])[0].decode()
    await Group.objects.aget_or_create(name=f"orm_hooks_async process_request {tag}")
    return {"users_seen": await get_user_model().objects.acount()}

"""A sync process_request that reads and writes with the ORM; its answer goes into the token."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group


def process_request(request):
    tag = request.arguments.get("tag", [b"-"])[0].decode()
    Group.objects.get_or_create(name=f"orm_hooks process_request {tag}")
    return {"users_seen": get_user_model().objects.count()}

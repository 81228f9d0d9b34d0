"""Shows the bearer tokens issued to headless clients in Django's admin, with an action that revokes them."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from . import bearer
from .models import BearerToken


@admin.register(BearerToken)
class BearerTokenAdmin(admin.ModelAdmin):
    """Read-only: tokens are issued by ``manage.py bokeh_token``; here they can only be revoked."""

    list_display = ("jti", "user", "app", "issued_at", "expires_at", "revoked_at")
    list_filter = ("revoked_at", "app")
    search_fields = ("jti", "user__username")
    readonly_fields = ("jti", "user", "app", "issued_at", "expires_at", "revoked_at")
    actions = ("revoke",)

    def has_add_permission(self, request: Any) -> bool:
        return False

    @admin.action(description="Revoke the selected bearer tokens", permissions=("change",))
    def revoke(self, request: Any, queryset: Any) -> None:
        count = bearer.revoke_tokens(queryset.filter(revoked_at__isnull=True).values_list("jti", flat=True))
        self.message_user(
            request,
            f"Revoked {count} bearer token(s); their open sessions are closed and clients using them are refused from their next request.",
        )

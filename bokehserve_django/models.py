"""Stores the bearer tokens issued to headless clients, so that every process can see a revocation.

A token is valid only while its row exists and has no ``revoked_at``: revoking one (by its
``jti``) or all of a user's (sign-out, deactivation) is a database write, which every
process of a cluster reads on the next request. See bearer.py.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

__all__ = ("BearerToken", "LiveSession")


class BearerToken(models.Model):
    """One JWT issued by ``manage.py bokeh_token``; the token itself is never stored."""

    jti = models.CharField("token id (jti)", max_length=64, primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="bokeh_bearer_tokens")
    #: The app the token is limited to, or "" for every app of the site.
    app = models.CharField(max_length=200, blank=True, default="")
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "Bokeh bearer token"
        ordering = ("-issued_at",)
        indexes = (models.Index(fields=("user", "revoked_at"), name="bokehserve_bearer_user_idx"),)

    def __str__(self) -> str:
        scope = f"app {self.app!r}" if self.app else "all apps"
        return f"{self.jti} ({self.user}, {scope})"


class LiveSession(models.Model):
    """No table: gives the admin's "Live Bokeh sessions" page its place and its permissions.

    Live sessions are in the processes' memory, not in the database; the page asks the
    processes (cluster/inventory.py). ``view_livesession`` lets staff see them,
    ``change_livesession`` close them and send notices.
    """

    class Meta:
        managed = False
        default_permissions = ("view", "change")
        verbose_name = "live Bokeh session"

    def __str__(self) -> str:
        return "live Bokeh session"

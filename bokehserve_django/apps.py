"""Registers bokehserve_django with Django: system checks and the sign-out signal handlers."""

from __future__ import annotations

from django.apps import AppConfig


class BokehServeConfig(AppConfig):
    name = "bokehserve_django"
    verbose_name = "Bokeh server"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import post_save

        from . import auth, checks  # noqa: F401  (checks registers the system checks)

        # Signing out or deactivation closes the user's live Bokeh sessions.
        user_logged_out.connect(auth.on_user_logged_out, dispatch_uid="bokehserve_django.logout")
        post_save.connect(auth.on_user_saved, sender=settings.AUTH_USER_MODEL, dispatch_uid="bokehserve_django.user_saved")

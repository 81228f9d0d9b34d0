"""Registers bokehserve_django with Django: system checks, sign-out signal handlers, the cluster's callbacks."""

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
        from .cluster import configure

        # The composition root: the cluster layer calls back into auth and views by name,
        # so that it imports neither.
        configure(
            load_relayed_user="bokehserve_django.auth.user_for_relayed_client",
            render_page="bokehserve_django.views.render_page_for_session",
            start_hooks=("bokehserve_django.auth.install",),
        )

        # Signing out or deactivation closes the user's live Bokeh sessions.
        user_logged_out.connect(auth.on_user_logged_out, dispatch_uid="bokehserve_django.logout")
        post_save.connect(auth.on_user_saved, sender=settings.AUTH_USER_MODEL, dispatch_uid="bokehserve_django.user_saved")

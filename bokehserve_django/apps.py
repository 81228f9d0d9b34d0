"""Registers bokehserve_django with Django: system checks, sign-out signal handlers, the cluster's callbacks."""

from __future__ import annotations

import warnings

from django.apps import AppConfig

# bokeh.settings warns "BOKEH_SECRET_KEY must be set if BOKEH_SIGN_SESSIONS is set to True"
# when it is first imported and BOKEH_SIGN_SESSIONS holds any non-empty string (it does not
# parse the value: "false" counts as set). That is wrong here: we read BOKEH_SIGN_SESSIONS
# ourselves (conf.py, validated by check E006), derive a key from Django's SECRET_KEY when
# BOKEH_SECRET_KEY is unset, and pass both to bokeh explicitly (signing.py). Django imports
# this module before anything imports bokeh, so the filter is in place in time.
warnings.filterwarnings("ignore", message="BOKEH_SECRET_KEY must be set if BOKEH_SIGN_SESSIONS is set to True")


def _refuse_values_fatal_to_bokeh() -> None:
    """Report a BOKEH_* value that would make bokeh's own import fail, in our words and first.

    Check E006 reports every other invalid BOKEH_* value; these cannot wait for the checks,
    since the URLconf the checks load imports bokeh, which dies with "Cannot convert ... to
    boolean value" and no variable name.
    """
    from .conf import BOKEH_IMPORT_FATAL, environment_error

    for variable in BOKEH_IMPORT_FATAL:
        error = environment_error(variable)
        if error is not None:
            raise type(error)(error.variable, error.value, f"{error.reason} Give {variable} a valid value or unset it.")


_refuse_values_fatal_to_bokeh()


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
            start_hooks=("bokehserve_django.auth.install", "bokehserve_django.bearer.install"),
        )

        # Signing out or deactivation closes the user's live Bokeh sessions.
        user_logged_out.connect(auth.on_user_logged_out, dispatch_uid="bokehserve_django.logout")
        post_save.connect(auth.on_user_saved, sender=settings.AUTH_USER_MODEL, dispatch_uid="bokehserve_django.user_saved")

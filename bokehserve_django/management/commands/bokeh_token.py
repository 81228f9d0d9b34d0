"""``manage.py bokeh_token USER [--app NAME] [--ttl SECONDS]``: a bearer token for a headless client.

Prints the JWT on stdout (and nothing else, so ``TOKEN=$(manage.py bokeh_token alice)``
works) and its id on stderr. ``--revoke JTI`` revokes one token instead; ``--list USER``
shows a user's tokens. See docs/embedding.md.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import bearer, registry
from ...conf import bokeh_settings
from ...exceptions import AppNotRegistered


class Command(BaseCommand):
    help = "Issue (or revoke) a bearer token with which a headless bokeh.client script acts as a Django user."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", nargs="?", help="User name (USERNAME_FIELD) the token acts as.")
        parser.add_argument("--app", metavar="NAME", help="Limit the token to this registered app (default: every app).")
        parser.add_argument(
            "--ttl", type=int, metavar="SECONDS",
            help=f"Lifetime in seconds (default BOKEHSERVE['BEARER_TOKEN_TTL'], now {bokeh_settings.BEARER_TOKEN_TTL}). "
            "Keep it as short as the job allows: anyone holding the token is that user.",
        )
        parser.add_argument("--revoke", metavar="JTI", help="Revoke the token with this id (jti) instead of issuing one.")
        parser.add_argument("--list", action="store_true", help="List USER's tokens (id, app, expiry, revoked) instead.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["revoke"]:
            if not bearer.revoke_token(options["revoke"]):
                raise CommandError(f"No unrevoked bearer token has the id {options['revoke']!r}; see --list USER.")
            self.stderr.write(
                f"Revoked bearer token {options['revoke']}. Server processes on this site's channel layer close "
                "the sessions it opened (with the in-memory layer, only a revocation inside the server does)."
            )
            return
        if not options["user"]:
            raise CommandError("Name the user the token acts as: manage.py bokeh_token USER [--app NAME] [--ttl SECONDS].")
        user = self._user(options["user"])
        if options["list"]:
            for row in user.bokeh_bearer_tokens.all():
                state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M:%S}" if row.revoked_at else "active"
                self.stdout.write(f"{row.jti}  {row.app or '*'}  expires {row.expires_at:%Y-%m-%d %H:%M:%S} UTC  {state}")
            return
        app_name = options["app"]
        if app_name is not None:
            try:
                registry.get_app(app_name)
            except AppNotRegistered:
                known = ", ".join(sorted(registry.registered_apps())) or "none"
                raise CommandError(f"No Bokeh app {app_name!r} is registered (registered: {known}).") from None
        ttl = options["ttl"]
        if ttl is not None and ttl <= 0:
            raise CommandError("--ttl must be a positive number of seconds.")
        token, row = bearer.issue_token(user, app_name=app_name, ttl=ttl)
        self.stdout.write(token)
        scope = f"app {app_name!r}" if app_name else "every app"
        self.stderr.write(f"Token {row.jti} for {user} ({scope}), valid until {row.expires_at:%Y-%m-%d %H:%M:%S} UTC.")

    def _user(self, name: str) -> Any:
        model = get_user_model()
        try:
            user = model._default_manager.get_by_natural_key(name)
        except model.DoesNotExist:
            raise CommandError(f"No user {name!r}.") from None
        if not user.is_active:
            raise CommandError(f"User {name!r} is deactivated; a token for them would be refused.")
        return user

"""Django admin pages: the bearer tokens issued to headless clients (revocable), and the live
Bokeh sessions of the whole cluster (closable, with notices to an app's pages)."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import admin

from . import bearer
from .models import BearerToken, LiveSession

logger = logging.getLogger(__name__)


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


# ---------------------------------------------------------------------------
# Live sessions of the whole cluster
# ---------------------------------------------------------------------------


def human_duration(seconds: float | None) -> str:
    """A duration for people: "8 s", "12 min", "3 h 05 min", "2 d 4 h"; "—" for None."""
    if seconds is None:
        return "\u2014"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def _process_label(process: Any) -> str:
    return f"process {process.pid} on {process.host}"


@admin.register(LiveSession)
class LiveSessionAdmin(admin.ModelAdmin):
    """One page for the live sessions of every process; close one, close a user's, send a notice.

    There are no rows in the database: the page asks the processes (cluster.inventory).
    Anonymous visitors go to the admin login; signed-in users who are not staff, and staff
    without the permission, get 403. Seeing needs ``view_livesession``; acting needs
    ``change_livesession`` (POST, with CSRF).
    """

    change_list_template = "admin/bokehserve_django/livesession/change_list.html"

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[Any]:
        from django.urls import path

        info = self.opts.app_label, self.opts.model_name
        return [
            path("", self._guarded(self.sessions_view, "view"), name="{}_{}_changelist".format(*info)),
            path("actions/", self._guarded(self.actions_view, "change"), name="{}_{}_actions".format(*info)),
            path("notice/", self._guarded(self.notice_view, "change"), name="{}_{}_notice".format(*info)),
        ]

    def _guarded(self, view: Any, needs: str) -> Any:
        """``view`` behind our checks, CSRF protection and no caching.

        Not ``admin_site.admin_view``: that sends signed-in non-staff users to the login page
        (a redirect); here they are refused with 403, which is what they are.
        """
        from functools import wraps

        from django.contrib.auth.views import redirect_to_login
        from django.core.exceptions import PermissionDenied
        from django.urls import reverse
        from django.views.decorators.cache import never_cache
        from django.views.decorators.csrf import csrf_protect

        @wraps(view)
        def guarded(request: Any, *args: Any, **kwargs: Any) -> Any:
            user = request.user
            if not (user.is_authenticated and user.is_active):
                return redirect_to_login(request.get_full_path(), reverse("admin:login", current_app=self.admin_site.name))
            if not user.is_staff:
                raise PermissionDenied("Live Bokeh sessions are for staff users.")
            allowed = self.has_view_permission(request) if needs == "view" else self.has_change_permission(request)
            if not allowed:
                raise PermissionDenied(f"This needs the permission bokehserve_django.{needs}_livesession.")
            return view(request, *args, **kwargs)

        return csrf_protect(never_cache(guarded))

    # -- the page ------------------------------------------------------------------

    def sessions_view(self, request: Any) -> Any:
        from asgiref.sync import async_to_sync
        from django.template.response import TemplateResponse

        from . import registry
        from .cluster import inventory

        found = async_to_sync(inventory.live_sessions)()
        app_filter, user_filter = request.GET.get("app") or None, request.GET.get("user") or None
        sessions = [
            s for s in found.sessions
            if (app_filter is None or s.app == app_filter) and (user_filter is None or s.user_pk == user_filter)
        ]
        rows = [
            {
                "facts": s,
                "value": f"{s.app}/{s.session_id}/{s.user_pk or ''}",
                "age": human_duration(s.age_seconds),
                "idle": human_duration(s.idle_seconds),
                "unused": human_duration(s.unused_seconds) if s.unused_seconds is not None else None,
            }
            for s in sessions
        ]
        per_process: dict[Any, int] = {}
        for s in found.sessions:
            per_process[s.process] = per_process.get(s.process, 0) + 1
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Live Bokeh sessions",
            "rows": rows,
            "total": len(found.sessions),
            "processes": [
                {"process": p, "sessions": per_process.get(p, 0), "answering": p not in found.not_answering}
                for p in found.processes
            ],
            "incomplete": found.incomplete,
            "app_names": sorted(registry.registered_apps()),
            "app_filter": app_filter,
            "user_filter": user_filter,
            "can_change": self.has_change_permission(request),
            "default_reason": inventory.DEFAULT_CLOSE_REASON,
            "max_reason_bytes": inventory.MAX_REASON_BYTES,
            "max_notice_length": inventory.MAX_NOTICE_LENGTH,
        }
        return TemplateResponse(request, self.change_list_template, context)

    # -- the actions (POST) --------------------------------------------------------

    def _back(self) -> Any:
        from django.shortcuts import redirect

        return redirect(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")

    def actions_view(self, request: Any) -> Any:
        """Close the selected sessions, or every session of their users."""
        from asgiref.sync import async_to_sync
        from django.contrib import messages
        from django.http import HttpResponseNotAllowed

        from .cluster import inventory

        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        selected = [value.rsplit("/", 2) for value in request.POST.getlist("session") if value.count("/") >= 2]
        action = request.POST.get("action")
        if not selected:
            messages.warning(request, "No session selected: tick the sessions to act on first.")
            return self._back()
        try:
            reason = inventory.clean_reason(request.POST.get("reason"))
        except inventory.InvalidCommand as exc:
            messages.error(request, f"Nothing was closed. {exc}")
            return self._back()
        if action == "close":
            # One question per process for the whole selection, however many sessions it holds.
            logger.info("Admin user %r closes %d session(s): %s", request.user.get_username(), len(selected),
                        ", ".join(f"{app}/{sid}" for app, sid, _user in selected))
            outcome = async_to_sync(inventory.close_sessions)([(app, sid) for app, sid, _user in selected], reason)
            app, session_id, _user = selected[0]
            what = f"session {session_id[:12]}\u2026 of app {app!r}" if len(selected) == 1 else f"{len(selected)} selected sessions"
            self._report(request, outcome, what)
        elif action == "close_user":
            users = sorted({user for _app, _sid, user in selected if user})
            anonymous = sum(1 for _app, _sid, user in selected if not user)
            if anonymous:
                messages.warning(request, f"Skipped {anonymous} anonymous session(s): they have no user; "
                                          "use \u201cClose the selected sessions\u201d for those.")
            if users:
                logger.info("Admin user %r closes every session of user(s) %s", request.user.get_username(), ", ".join(users))
                outcome = async_to_sync(inventory.close_users_sessions)(users, reason)
                self._report(request, outcome, f"every session of user{'' if len(users) == 1 else 's'} {', '.join(users)}")
        else:
            messages.error(request, f"Unknown action {action!r}: choose one in the list.")
        return self._back()

    def notice_view(self, request: Any) -> Any:
        """Send a notice to every open page of one app."""
        from asgiref.sync import async_to_sync
        from django.contrib import messages
        from django.http import HttpResponseNotAllowed

        from . import registry
        from .cluster import inventory

        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        app = request.POST.get("app", "")
        if app not in registry.registered_apps():
            messages.error(request, f"No notice sent: {app!r} is not a registered app.")
            return self._back()
        try:
            text = inventory.clean_notice(request.POST.get("text"))
            logger.info("Admin user %r sends a notice to app %r: %r", request.user.get_username(), app, text)
            outcome = async_to_sync(inventory.send_notice)(app, text)
        except inventory.InvalidCommand as exc:
            messages.error(request, f"No notice sent. {exc}")
            return self._back()
        self._report(request, outcome, f"the open pages of app {app!r}", verb="Sent the notice to", noun="connection")
        return self._back()

    def _report(self, request: Any, outcome: Any, what: str, verb: str = "Closed", noun: str = "session") -> None:
        from django.contrib import messages

        if outcome.count:
            where = ", ".join(f"{count} in {_process_label(process)}" for process, count in outcome.by_process)
            messages.success(request, f"{verb} {what}: {outcome.count} {noun}{'' if outcome.count == 1 else 's'} ({where}).")
        elif noun == "connection":
            messages.warning(request, f"{verb} {what}: none is open now, so nobody saw it.")
        else:
            messages.warning(request, f"{verb} {what}: no process holds such a session now (closed already?).")
        for process in outcome.not_answering:
            messages.warning(request, f"{_process_label(process).capitalize()} did not answer in time; it may still act on the request.")
        if outcome.incomplete:
            messages.warning(request, outcome.incomplete)

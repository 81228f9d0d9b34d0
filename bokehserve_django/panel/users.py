"""Makes ``pn.state.user`` and ``pn.state.user_info`` the Django user of the session.

Under ``panel serve`` these come from Panel's signed ``user`` and ``id_token`` cookies, set by
its OAuth or basic-auth login. Here sign-in is Django's: the session knows its user
(``session_context.user``, the user the page was opened for), so nothing about the user
travels in cookies or tokens. Sessions that are not ours keep Panel's own answer.

Imports panel.
"""

from __future__ import annotations

from typing import Any

from panel.io.state import _state

from ..sessions import BokehSessionContext

__all__ = ("install", "user_info_of", "username_of")

_installed = False


def username_of(user: Any) -> str | None:
    """The user name Panel apps see for a Django user; None when signed out."""
    if not getattr(user, "is_authenticated", False):
        return None
    return user.get_username()


def user_info_of(user: Any) -> dict[str, Any] | None:
    """What Panel apps read from pn.state.user_info, from the Django user's own fields."""
    username = username_of(user)
    if username is None:
        return None
    full_name = user.get_full_name() if hasattr(user, "get_full_name") else ""
    return {
        "user": username,
        "username": username,
        "name": full_name or username,
        "email": getattr(user, "email", "") or "",
        "is_staff": bool(getattr(user, "is_staff", False)),
        "is_superuser": bool(getattr(user, "is_superuser", False)),
    }


def _our_session_context(state: Any) -> BokehSessionContext | None:
    document = state.curdoc
    context = document.session_context if document is not None else None
    return context if isinstance(context, BokehSessionContext) else None


def install() -> None:
    """Replace Panel's user properties once per process; Panel's own answer stays for other sessions."""
    global _installed
    if _installed:
        return
    panel_user, panel_user_info = _state.user, _state.user_info

    def user(state: Any) -> str | None:
        context = _our_session_context(state)
        return username_of(context.user) if context is not None else panel_user.fget(state)

    def user_info(state: Any) -> dict[str, Any] | None:
        context = _our_session_context(state)
        return user_info_of(context.user) if context is not None else panel_user_info.fget(state)

    user.__doc__ = "The signed-in Django user's name (bokehserve_django), or Panel's OAuth user elsewhere."
    user_info.__doc__ = "The signed-in Django user's fields (bokehserve_django), or Panel's OAuth claims elsewhere."
    _state.user = property(user)
    _state.user_info = property(user_info)
    _installed = True

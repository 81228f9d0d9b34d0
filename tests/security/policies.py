"""Access predicates used by the security tests' app registrations."""

from __future__ import annotations

from typing import Any


def alice_only(user: Any, request: Any) -> bool:
    """A callable access policy: only the user named "alice" gets in."""
    return bool(getattr(user, "is_authenticated", False)) and user.get_username() == "alice"

"""Who is acting: the actor every audit event and history record names.

A request sets it from the signed-in user (AuditActorMiddleware); a command or
task sets it with ``acting_as(...)``. With nothing set, events are recorded as
the ``system`` component, never as nobody.
"""

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    id: int | None
    name: str

    @classmethod
    def of(cls, who) -> "Actor":
        """An Actor from a user, a component name, or an Actor."""
        if isinstance(who, Actor):
            return who
        if isinstance(who, str):
            return cls(None, who if who.startswith("system") else f"system:{who}")
        if who is None or not getattr(who, "is_authenticated", False):
            return SYSTEM
        return cls(who.pk, who.get_username())


SYSTEM = Actor(None, "system")

_current: ContextVar[Actor | None] = ContextVar("keel_audit_actor", default=None)
_current_user: ContextVar[object | None] = ContextVar("keel_audit_user", default=None)


def current_actor() -> Actor:
    return _current.get() or SYSTEM


def current_user():
    """The user behind the current actor, for history records (None for system)."""
    return _current_user.get()


@contextmanager
def acting_as(who):
    """Attribute everything inside to ``who`` (a user or a component name)."""
    actor_token = _current.set(Actor.of(who))
    user_token = _current_user.set(who if getattr(who, "is_authenticated", False) else None)
    try:
        yield
    finally:
        _current.reset(actor_token)
        _current_user.reset(user_token)


def history_user(request=None, **kwargs):
    """simple-history's ``get_user``: the signed-in user of a request, else the
    user a command or task is acting as (``acting_as``), else nobody."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user
    return current_user()

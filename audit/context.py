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


@dataclass(frozen=True)
class Via:
    """The API token a request acts through, and the person who created it:
    every event the request records names both (``via_token`` in its payload)."""

    token_id: int
    prefix: str
    created_by_id: int | None
    created_by: str | None

    def as_payload(self) -> dict:
        return {
            "id": self.token_id,
            "prefix": self.prefix,
            "created_by_id": self.created_by_id,
            "created_by": self.created_by,
        }


_current: ContextVar[Actor | None] = ContextVar("keel_audit_actor", default=None)
_current_user: ContextVar[object | None] = ContextVar("keel_audit_user", default=None)
_current_via: ContextVar[Via | None] = ContextVar("keel_audit_via", default=None)


def current_actor() -> Actor:
    return _current.get() or SYSTEM


def current_via() -> Via | None:
    """The token the current request acts through, if any."""
    return _current_via.get()


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


@contextmanager
def request_scope():
    """One request's audit context: whatever is set inside (by ``acting_as``,
    or by ``act_through_token`` from the API's authentication, which runs
    inside the view) is undone when the request ends, so nothing reaches the
    next request the thread serves."""
    tokens = (_current.set(_current.get()), _current_user.set(_current_user.get()), _current_via.set(None))
    try:
        yield
    finally:
        for var, token in zip((_current, _current_user, _current_via), tokens, strict=True):
            var.reset(token)


def act_through_token(*, user, via: Via) -> None:
    """For the rest of the request (``request_scope``): ``user`` (the token's
    user) is the actor, and every event names the token and its creator."""
    _current.set(Actor.of(user))
    _current_user.set(user)
    _current_via.set(via)


def history_user(request=None, **kwargs):
    """simple-history's ``get_user``: the signed-in user of a request, else the
    user a command or task is acting as (``acting_as``), else nobody."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user
    return current_user()

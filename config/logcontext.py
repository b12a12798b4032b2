"""The context every log line carries: the request id, the acting user, and
the workspace, pipeline, run, step and Celery task in force.

Plain context variables, so any layer may set them (the engine binds its run
and step) and a request or task sees only its own. The user is read from the
audit actor (``audit.context``) at the moment of logging: a person's id, or a
component's name such as ``system:canary-watch``, never a username.
"""

import re
import uuid
from contextlib import contextmanager
from contextvars import ContextVar

from audit.context import current_actor

# What a log line may name, in the order the JSON formatter writes them.
FIELDS = ("request_id", "workspace", "pipeline", "run_id", "step", "task_id")

_context: ContextVar[dict | None] = ContextVar("keel_log_context", default=None)

# A request id a client sends is believed only when it looks like one: up to
# 128 characters of letters, digits and ._:- (UUIDs, W3C trace ids, ULIDs).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_from(header: str | None) -> str:
    """The client's X-Request-ID when it is well formed, else a new one."""
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def log_context() -> dict:
    """The fields in force, with the acting user; empty values left out."""
    fields = dict(_context.get() or {})
    actor = current_actor()
    fields["user"] = actor.id if actor.id is not None else actor.name
    return fields


def log_context_bind(**fields) -> None:
    """Add fields for the rest of the current scope (a request, a task);
    ``None`` removes one."""
    merged = {**(_context.get() or {}), **fields}
    _context.set({key: value for key, value in merged.items() if value is not None})


def log_context_get(name: str):
    return (_context.get() or {}).get(name)


@contextmanager
def log_scope(**fields):
    """A scope of its own (a request, a task): whatever is bound inside is
    undone when it ends, so nothing reaches the next request the thread serves."""
    token = _context.set({key: value for key, value in fields.items() if value is not None})
    try:
        yield
    finally:
        _context.reset(token)


def log_scope_enter(**fields):
    """``log_scope`` for a caller whose start and end are two calls (Celery's
    task_prerun and task_postrun); returns the token for ``log_scope_exit``."""
    return _context.set({key: value for key, value in fields.items() if value is not None})


def log_scope_exit(token) -> None:
    _context.reset(token)

"""Who held which right, at any moment, read back from the audit chain.

Every grant and revoke of an object right (``permission.granted`` /
``permission.revoked``), every role membership change (``role.granted`` /
``role.revoked``) and every identity change (``user.*``, ``group.*``: see
governance/identity.py) is on the chain, so replaying those events up to a
moment gives the rights as they stood then, whatever has changed since.

Users and groups are keyed by id, never by name: a rename changes only the
name shown (the newest known at that moment), and a deleted user or group
holds nothing from its deletion on. Superuser and staff status are shown as
site-wide holdings. A deactivated user holds nothing while deactivated, as
``user_can`` and the access review (audit/access.py) have it.
"""

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Q

from audit.models import AuditEvent

RIGHT_EVENTS = ("permission.granted", "permission.revoked", "role.granted", "role.revoked")
# Identity events that change who holds what, or a holder's name.
USER_EVENTS = (
    "user.created", "user.recorded", "user.renamed", "user.deleted", "user.superuser_granted",
    "user.superuser_removed", "user.staff_granted", "user.staff_removed", "user.activated", "user.deactivated",
)  # fmt: skip
GROUP_EVENTS = ("group.created", "group.renamed", "group.deleted")
SITE = "site"  # where superuser and staff status are held


@dataclass(frozen=True, order=True)
class Holding:
    right: str
    user: str
    on: str  # "pipeline:3" or "workspace:1": where the right was granted; "site" for superuser and staff
    via_group: str = ""  # the group it came through, if not held directly
    user_id: int | None = field(default=None, compare=False)


@dataclass
class _User:
    name: str = ""
    active: bool = True
    deleted: bool = False
    superuser: bool = False
    staff: bool = False


def rights_at(*, at: datetime, objects: list[tuple[str, object]]) -> list[Holding]:
    """Every right held on ``objects`` ((object_type, id) pairs, e.g. a
    pipeline and its workspace) at the moment ``at``, with every superuser and
    staff member then, sorted by right and user."""
    wanted = {(object_type, str(object_id)) for object_type, object_id in objects}
    on_objects = Q()
    for object_type, object_id in wanted:
        on_objects |= Q(object_type=object_type, object_id=object_id)
    events = (
        AuditEvent.objects.filter(ts__lte=at)
        .filter(
            (Q(action__in=RIGHT_EVENTS) & (on_objects | Q(action__startswith="role.")))
            | Q(action__in=USER_EVENTS, object_type="user")
            | Q(action__in=GROUP_EVENTS, object_type="group")
        )
        .order_by("seq")
        .values_list("action", "object_type", "object_id", "payload")
    )
    users: dict[int, _User] = defaultdict(_User)
    group_names: dict[int, str] = {}
    grants: set[tuple] = set()  # (object_type, object_id, permission, "user" or "group", holder id)
    members: dict[int, set[int]] = defaultdict(set)

    for action, object_type, object_id, payload_text in events.iterator(chunk_size=2_000):
        payload = json.loads(payload_text)
        if payload.get("redacted"):
            continue
        if object_type == "user" and action.startswith("user."):
            _user_event(users[int(object_id)], action, payload)
            continue
        if object_type == "group" and action.startswith("group."):
            group_id = int(object_id)
            group_names[group_id] = payload.get("new") or payload.get("group", "")
            if action == "group.deleted":
                members.pop(group_id, None)
                grants = {g for g in grants if g[3:] != ("group", group_id)}
            continue
        granted = action.endswith(".granted")
        if action.startswith("role."):
            user_id = int(object_id)
            users[user_id].name = payload.get("user") or users[user_id].name
            group_names.setdefault(payload["group_id"], payload.get("group", ""))
            (members[payload["group_id"]].add if granted else members[payload["group_id"]].discard)(user_id)
            continue
        if "user_id" in payload:
            holder = ("user", payload["user_id"])
            users[payload["user_id"]].name = payload.get("user") or users[payload["user_id"]].name
        elif "group_id" in payload:
            holder = ("group", payload["group_id"])
            group_names[payload["group_id"]] = payload.get("group") or group_names.get(payload["group_id"], "")
        else:
            continue  # a site-wide (model-level) right: not a right on these objects
        grant = (object_type, object_id, payload["permission"], *holder)
        (grants.add if granted else grants.discard)(grant)

    def holds(user_id: int) -> bool:
        user = users.get(user_id)
        return user is None or (user.active and not user.deleted)

    holdings = set()
    for object_type, object_id, permission, kind, holder_id in grants:
        on = f"{object_type}:{object_id}"
        if kind == "user":
            if holds(holder_id):
                holdings.add(Holding(permission, users[holder_id].name, on, user_id=holder_id))
            continue
        for user_id in members.get(holder_id, ()):
            if holds(user_id):
                holdings.add(Holding(permission, users[user_id].name, on, via_group=group_names.get(holder_id, ""),
                                     user_id=user_id))  # fmt: skip
    for user_id, user in users.items():
        if user.active and not user.deleted:
            if user.superuser:
                holdings.add(Holding("superuser", user.name, SITE, user_id=user_id))
            if user.staff:
                holdings.add(Holding("staff", user.name, SITE, user_id=user_id))
    return sorted(holdings)


def _user_event(user: _User, action: str, payload: dict) -> None:
    """Apply one ``user.*`` event to what is known of the user."""
    user.name = payload.get("new") or payload.get("user") or user.name
    if action in ("user.created", "user.recorded"):
        user.superuser = bool(payload.get("is_superuser"))
        user.staff = bool(payload.get("is_staff"))
        user.active = bool(payload.get("is_active", True))
        user.deleted = False
    elif action == "user.deleted":
        user.deleted = True
    elif action in ("user.superuser_granted", "user.superuser_removed"):
        user.superuser = action.endswith("granted")
    elif action in ("user.staff_granted", "user.staff_removed"):
        user.staff = action.endswith("granted")
    elif action in ("user.activated", "user.deactivated"):
        user.active = action == "user.activated"


# What each right lets its holder do, in words; {target} is what it was granted on.
RIGHT_WORDS = {
    "approve_release": "approve releases of {target}",
    "deploy_pipeline": "deploy, roll back and pause {target}",
    "review_output": "review the outputs of {target}",
    "view_audit": "read the audit trail of {target}",
    "view_pipeline": "see {target}",
    "change_pipeline": "change {target}",
    "view_workspace": "see {name} and everything in it",
    "change_workspace": "change the workspace {name} itself",
    "change_config": "change the pipelines, prompts, model configs and policies of {name}",
}
SITE_WORDS = {
    "superuser": "is a superuser: may do everything, everywhere",
    "staff": "may sign in to the admin (staff status)",
    "every right": "is a superuser: may do everything, everywhere",
}


def right_in_words(right: str, on: str, names: dict[str, str]) -> str:
    """``may approve releases of Support ticket triage`` for the right
    ``approve_release`` on ``pipeline:3``; on a workspace, a pipeline right
    reads ``... of every pipeline in Northwind Traders``. ``names`` maps
    ``pipeline:3`` to a name; an object without one (deleted, or not the
    reader's to see) is named by its kind and id."""
    if on == SITE:
        return right_words(right, SITE, "")
    kind, _, object_id = on.partition(":")
    return right_words(right, kind, names.get(on) or f"{kind} #{object_id}")


def right_words(right: str, kind: str, name: str) -> str:
    """The words for ``right`` held on the ``kind`` (pipeline, workspace or
    site) called ``name``."""
    if kind == SITE or right in SITE_WORDS:
        return SITE_WORDS.get(right, f"holds the site-wide right “{right}”")
    words = RIGHT_WORDS.get(right)
    if words is None:
        return f"holds the right “{right.replace('_', ' ')}” on {kind} {name}"
    target = f"every pipeline in {name}" if kind == "workspace" else name
    return "may " + words.format(target=target, name=name)

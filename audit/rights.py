"""Who held which right, at any moment, read back from the audit chain.

Every grant and revoke of an object right (``permission.granted`` /
``permission.revoked``) and every role membership change (``role.granted`` /
``role.revoked``) is on the chain (see governance/signals.py), so replaying
those events up to a moment gives the rights as they stood then, whatever has
changed since. Superuser status is not a recorded right and is not shown.
"""

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from audit.models import AuditEvent

RIGHT_EVENTS = ("permission.granted", "permission.revoked", "role.granted", "role.revoked")


@dataclass(frozen=True, order=True)
class Holding:
    right: str
    user: str
    on: str  # "pipeline:3" or "workspace:1": where the right was granted
    via_group: str = ""  # the group it came through, if not held directly


def rights_at(*, at: datetime, objects: list[tuple[str, object]]) -> list[Holding]:
    """Every right held on ``objects`` ((object_type, id) pairs, e.g. a
    pipeline and its workspace) at the moment ``at``, sorted by right and user."""
    wanted = {(object_type, str(object_id)) for object_type, object_id in objects}
    on_objects = Q()
    for object_type, object_id in wanted:
        on_objects |= Q(object_type=object_type, object_id=object_id)
    events = (
        AuditEvent.objects.filter(ts__lte=at, action__in=RIGHT_EVENTS)
        .filter(on_objects | Q(action__startswith="role."))
        .order_by("seq")
        .values_list("action", "object_type", "object_id", "payload")
    )
    grants: set[tuple] = set()
    members: dict[int, dict[int, str]] = defaultdict(dict)

    for action, object_type, object_id, payload_text in events.iterator(chunk_size=2_000):
        payload = json.loads(payload_text)
        if payload.get("redacted"):
            continue
        granted = action.endswith(".granted")
        if action.startswith("role."):
            group, user = payload["group_id"], (int(object_id), payload["user"])
            if granted:
                members[group][user[0]] = user[1]
            else:
                members[group].pop(user[0], None)
            continue
        if "user_id" in payload:
            holder = ("user", payload["user_id"], payload["user"])
        elif "group_id" in payload:
            holder = ("group", payload["group_id"], payload["group"])
        else:
            continue  # a site-wide (model-level) right: not a right on these objects
        grant = (object_type, object_id, payload["permission"], holder)
        if granted:
            grants.add(grant)
        else:
            grants.discard(grant)
    holdings = set()
    for object_type, object_id, permission, (kind, holder_id, name) in grants:
        on = f"{object_type}:{object_id}"
        if kind == "user":
            holdings.add(Holding(permission, name, on))
        else:
            for user_name in members[holder_id].values():
                holdings.add(Holding(permission, user_name, on, via_group=name))
    return sorted(holdings)

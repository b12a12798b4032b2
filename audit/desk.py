"""What the auditor's desk shows of an event: names instead of ids (the ids
on hover), the object in words, and the payload as one line, its canonical
JSON kept for the expanded view. Presentation only: nothing here is hashed
or exported as proof."""

import json
from dataclasses import dataclass

from django.urls import reverse

from audit.access import names_for
from audit.exports import AuditScope
from audit.models import AuditEvent
from audit.summary import payload_summary


@dataclass(frozen=True)
class Named:
    """A name to show and the kind and id behind it (the hover text)."""

    label: str
    title: str
    url: str = ""


@dataclass(frozen=True)
class EventRow:
    event: AuditEvent
    summary: str
    object: Named
    workspace: Named | None
    pipeline: Named | None


def _named(kind: str, object_id, names: dict[str, str]) -> Named | None:
    if object_id is None:
        return None
    key = f"{kind}:{object_id}"
    return Named(names.get(key, f"#{object_id}"), f"{kind} #{object_id}")


def _object(event: AuditEvent, names: dict[str, str], payload: dict) -> Named:
    kind, object_id = event.object_type, event.object_id
    title = f"{kind} #{object_id}"
    if kind == "run" and object_id.isdigit():
        return Named(f"run {object_id}", title, reverse("audit-run", args=[object_id]))
    name = names.get(f"{kind}:{object_id}") or payload.get("object")
    if isinstance(name, str) and name:
        return Named(f"{kind.replace('_', ' ')} {name}", title)
    return Named(f"{kind.replace('_', ' ')} #{object_id}", title)


def event_rows(events: list[AuditEvent], scope: AuditScope) -> list[EventRow]:
    """The rows of a page of events, with every workspace and pipeline named
    in two queries, and only those the reader may see named at all."""
    names = names_for(
        scope,
        workspace_ids={event.workspace_id for event in events},
        pipeline_ids={event.pipeline_id for event in events},
    )
    rows = []
    for event in events:
        payload = {} if event.is_redacted else _payload(event.payload)
        rows.append(
            EventRow(
                event=event,
                summary=payload_summary(event.payload, redacted=event.is_redacted),
                object=_object(event, names, payload),
                workspace=_named("workspace", event.workspace_id, names),
                pipeline=_named("pipeline", event.pipeline_id, names),
            )
        )
    return rows


def _payload(text: str) -> dict:
    try:
        payload = json.loads(text)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}

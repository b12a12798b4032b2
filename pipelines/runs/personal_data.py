"""Where a data subject's personal data is stored, read from the models themselves.

A model that stores it names its fields in ``personal_fields``; when its rows
belong to another row's story (a run's steps, a task's decisions, a case's
results) it names that foreign key in ``personal_parent``. The erasure and
retention paths walk ``apps.get_models()`` for these attributes, so a new
model is covered by saying so on the model, never by a list elsewhere. Every
other column that can hold free text (text, JSON, bytes, a character field
without choices) is listed below with the reason it is kept; a test fails for
any column in neither place.

A row that names a person takes its whole family with it: its parents up to
the root (a run, or a case made by hand) and everything under that root. The
audit chain is not walked here: its payloads go through ``audit_redact``.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass

from django.apps import apps
from django.db import models
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

TOMBSTONE = {"redacted": True}

# Models that are not Keel's own and still hold copies of what Keel's rows
# say: the admin's change log keeps ``str(obj)`` (a case's name, a document's
# file name). Their personal columns, as a Keel model would declare them.
EXTERNAL_PERSONAL_FIELDS = {"admin.LogEntry": ("object_repr", "change_message")}

# Whole models with free-text columns that hold no data subject's personal
# data, and why. Configuration and its history are never redacted: they are
# what governance must be able to show later.
KEPT_MODELS = {
    "auth.Permission": "schema: permission names",
    "auth.Group": "schema: role names",
    "auth.User": "Keel's own staff accounts, managed (deactivated) in the admin; their names are the chain's actors",
    "contenttypes.ContentType": "schema: model names",
    "sessions.Session": "signed sessions of staff sign-ins; they expire",
    "guardian.UserObjectPermission": "object rights by id",
    "guardian.GroupObjectPermission": "object rights by id",
    "governance.Workspace": "configuration",
    "governance.Credential": "configuration: a credential's name and where its value lives, never the value",
    "governance.HistoricalCredential": "configuration history",
    "governance.ServiceAccount": "a workspace's non-person account and what it is for: configuration",
    "governance.HistoricalWorkspace": "configuration history",
    "governance.ApprovalPolicy": "configuration",
    "governance.HistoricalApprovalPolicy": "configuration history",
    "governance.ChangePolicy": "configuration",
    "governance.HistoricalChangePolicy": "configuration history",
    "pipelines.PromptTemplate": "configuration",
    "pipelines.HistoricalPromptTemplate": "configuration history",
    "pipelines.ModelConfig": "configuration",
    "pipelines.HistoricalModelConfig": "configuration history",
    "pipelines.Pipeline": "configuration (its escalation contact is a member of staff)",
    "pipelines.HistoricalPipeline": "configuration history",
    "pipelines.Step": "configuration",
    "pipelines.HistoricalStep": "configuration history",
    "pipelines.Deployment": "configuration: which release is live, pause reasons",
    "pipelines.HistoricalDeployment": "configuration history",
    "pipelines.Release": "release control: an immutable snapshot of configuration",
    "pipelines.ReleaseTransition": "release control: who approved a release and why",
    "pipelines.PipelineSchedule": "configuration: an operator-written input, edited in the admin",
    "pipelines.Budget": "configuration and ids of paused deployments",
    "pipelines.ServiceToken": "credentials' names and hashes",
    "pipelines.Heartbeat": "component names",
    "axes.AccessAttempt": "staff sign-in security log, rotated by django-axes",
    "axes.AccessFailureLog": "staff sign-in security log, rotated by django-axes",
    "axes.AccessLog": "staff sign-in security log, rotated by django-axes",
    "otp_totp.TOTPDevice": "staff second factors",
    "django_celery_beat.SolarSchedule": "scheduler configuration",
    "django_celery_beat.IntervalSchedule": "scheduler configuration",
    "django_celery_beat.CrontabSchedule": "scheduler configuration",
    "django_celery_beat.PeriodicTask": "scheduler configuration",
}

# Free-text columns of models that do hold personal data, which are kept.
KEPT_FIELDS = {
    "audit.AuditEvent": {
        "actor_name": "a member of staff or a component",
        "action": "a fixed name",
        "object_type": "a fixed name",
        "object_id": "an id, or a data-subject request's keyed hash",
        "payload_sha256": "a hash",
        "prev_hash": "a hash",
        "hash": "a hash",
    },
    "pipelines.Run": {
        "environment": "staging or production",
        "input_sha256": "a hash, kept so the chain and replay still know what ran",
        "lease_owner": "a worker's name",
    },
    "pipelines.StepRun": {"name": "the step's configured name", "kind": "a step kind", "output_sha256": "a hash"},
    "pipelines.Delivery": {
        "url": "the configured endpoint",
        "payload_sha256": "a hash",
        "receiver": "the receiving server's host and name",
        "event": "a fixed event name",
    },
    "pipelines.Document": {"sha256": "a hash"},
    "pipelines.EvaluationCase": {
        "expected_label": "a label of the pipeline's own set",
        "output_schema": "a JSON Schema",
    },
    "reviews.ReviewTask": {"reason_codes": "the gate's fixed reason codes", "reasons": "the gate's fixed reason codes"},
    "admin.LogEntry": {"object_id": "an id"},
}


def free_text_fields(model: type[models.Model]) -> list[models.Field]:
    """Columns that can hold anything a person typed or sent."""
    return [
        field
        for field in model._meta.concrete_fields
        if not field.is_relation
        and (
            isinstance(field, models.TextField | models.JSONField | models.BinaryField)
            or (isinstance(field, models.CharField) and not field.choices)
        )
    ]


@dataclass(frozen=True)
class Holder:
    """One model that stores personal data, and how its rows hang together."""

    model: type[models.Model]
    fields: tuple[str, ...]
    parent: str | None = None

    @property
    def label(self) -> str:
        return self.model._meta.label

    @property
    def table(self) -> str:
        return self.model._meta.db_table

    @property
    def noun(self) -> str:
        # The object_type the model's audit events carry.
        return getattr(self.model, "audit_noun", self.model._meta.model_name)

    @property
    def parent_model(self) -> type[models.Model] | None:
        return self.model._meta.get_field(self.parent).related_model if self.parent else None

    def field(self, name: str) -> models.Field:
        return self.model._meta.get_field(name)


def holders(models_: Iterable[type[models.Model]] | None = None) -> list[Holder]:
    """Every model that stores personal data (of ``models_``, else of the
    installed apps), the audit chain included (whose payloads only
    ``audit_redact`` may change)."""
    found = []
    for model in apps.get_models() if models_ is None else models_:
        if model._meta.proxy:
            continue
        fields = getattr(model, "personal_fields", None)
        if fields is None:
            fields = EXTERNAL_PERSONAL_FIELDS.get(model._meta.label)
        if fields is not None:
            found.append(Holder(model, tuple(fields), getattr(model, "personal_parent", None)))
    return found


def holder_of(model: type[models.Model]) -> Holder | None:
    return next((h for h in holders() if h.model is model), None)


def kept_holders() -> list[Holder]:
    """The free-text columns that are kept (configuration, staff accounts, and
    the kept columns of the tables above), as holders to search, never to
    redact: a search reports what stays as well as what can go."""
    personal = {holder.model: set(holder.fields) for holder in holders()}
    kept = []
    for model in apps.get_models():
        if model._meta.proxy:
            continue
        names = tuple(f.name for f in free_text_fields(model) if f.name not in personal.get(model, ()))
        if names:
            kept.append(Holder(model, names))
    return kept


def text_forms(identifier: str) -> set[str]:
    # A JSON column may hold non-ASCII text escaped (\u00eb), as SQLite's does.
    return {identifier, json.dumps(identifier)[1:-1]}


def matching_pks(holder: Holder, forms: Iterable[str]) -> set:
    """The keys of the holder's rows whose personal fields name any of ``forms``
    (case-insensitively), redacted rows never among them."""
    forms = list(forms)
    rows = holder.model._default_manager.all()
    match = Q()
    byte_fields = []
    for name in holder.fields:
        field = holder.field(name)
        if isinstance(field, models.BinaryField):
            byte_fields.append(name)
            continue
        if isinstance(field, models.JSONField):
            rows = rows.annotate(**{f"{name}__as_text": Cast(name, TextField())})
            name = f"{name}__as_text"
        for form in forms:
            match |= Q(**{f"{name}__icontains": form})
    found = set(rows.filter(match).values_list("pk", flat=True)) if match else set()
    if byte_fields:
        # Bytes (an uploaded document) are compared here: neither database
        # searches a binary column case-insensitively.
        needles = [form.lower().encode() for form in forms]
        for pk, *values in holder.model._default_manager.values_list("pk", *byte_fields).iterator(chunk_size=50):
            if any(needle in bytes(value or b"").lower() for value in values for needle in needles):
                found.add(pk)
    return found


def _parent_pks(holder: Holder, pks: set) -> set:
    if not holder.parent or not pks:
        return set()
    column = holder.field(holder.parent).attname
    values = holder.model._default_manager.filter(pk__in=pks).values_list(column, flat=True)
    return {value for value in values if value is not None}


def families(selected: dict[type[models.Model], set]) -> dict[type[models.Model], set]:
    """``selected`` with every row's parents up to its root, and everything
    under those roots: the rows an erasure must redact together."""
    every = holders()
    chosen = {holder.model: set(selected.get(holder.model, ())) for holder in every}
    changed = True
    while changed:  # upward: a step names the person, so its run does
        changed = False
        for holder in every:
            parents = _parent_pks(holder, chosen[holder.model]) - chosen.get(holder.parent_model, set())
            if parents:
                chosen[holder.parent_model] |= parents
                changed = True
    return descendants(chosen)


def descendants(chosen: dict[type[models.Model], set]) -> dict[type[models.Model], set]:
    """``chosen`` with every row under it (a run's steps, its tasks' decisions...)."""
    every = holders()
    chosen = {holder.model: set(chosen.get(holder.model, ())) for holder in every}
    changed = True
    while changed:
        changed = False
        for holder in every:
            parents = chosen.get(holder.parent_model) if holder.parent else None
            if not parents:
                continue
            column = holder.field(holder.parent).attname
            rows = holder.model._default_manager.filter(**{f"{column}__in": parents})
            new = set(rows.values_list("pk", flat=True)) - chosen[holder.model]
            if new:
                chosen[holder.model] |= new
                changed = True
    return chosen


def _redacted_value(field: models.Field, current):
    if isinstance(field, models.JSONField):
        if current is None and field.null:
            return None  # nothing was there (an approval without an edit)
        return [] if field.default is list else TOMBSTONE
    if isinstance(field, models.BinaryField):
        return b""
    # A nullable key (an idempotency key) goes back to NULL, which no unique constraint counts.
    return None if field.null else ""


def _same(current, redacted) -> bool:
    if isinstance(current, memoryview):
        current = bytes(current)
    return current == redacted


def rows_redact(holder: Holder, pks: set, *, now=None) -> tuple[int, list[str]]:
    """Replace the personal fields of the holder's rows ``pks`` with their
    tombstones (``{"redacted": true}``, an empty list, text or bytes), setting
    ``redacted_at`` where the model has one (a guarded table's one permitted
    change). Returns (rows changed, the text values removed), the latter so
    that audit events repeating them can be redacted too."""
    if not pks or holder.model._meta.label == "audit.AuditEvent":
        return 0, []
    now = now or timezone.now()
    model = holder.model
    has_redacted_at = any(f.name == "redacted_at" for f in model._meta.concrete_fields)
    rows = model._default_manager.filter(pk__in=pks)
    if has_redacted_at:
        rows = rows.filter(redacted_at__isnull=True)
    removed: list[str] = []
    count = 0
    for row in rows.only("pk", *holder.fields).order_by("pk"):
        values = {name: _redacted_value(holder.field(name), getattr(row, name)) for name in holder.fields}
        values.update(getattr(row, "personal_redacted_values", dict)())
        if all(_same(getattr(row, name), value) for name, value in values.items()):
            continue  # redacted before
        if has_redacted_at:
            values["redacted_at"] = now
        for name in holder.fields:
            value = getattr(row, name)
            if isinstance(value, str) and len(value) >= 4:
                removed.append(value)
        model._default_manager.filter(pk=row.pk).update(**values)
        count += 1
    return count, removed


def coverage_gaps(models_: Iterable[type[models.Model]] | None = None) -> list[str]:
    """What the walk cannot account for: a free-text column neither redacted
    nor kept with a reason, a parent that stores nothing, or a kept entry
    naming what no longer exists. Empty when every column is accounted for."""
    every = models_ is None
    models_ = [m for m in (apps.get_models() if every else models_) if not m._meta.proxy]
    covered = {h.model: h for h in holders([*apps.get_models(), *models_])}
    gaps = []
    for model in models_:
        label = model._meta.label
        texts = {field.name for field in free_text_fields(model)}
        holder = covered.get(model)
        if holder is None:
            if texts and label not in KEPT_MODELS:
                gaps.append(f"{label}: {', '.join(sorted(texts))} hold free text; declare personal_fields or keep it")
            continue
        kept = KEPT_FIELDS.get(label, {})
        for name in sorted(texts - set(holder.fields) - set(kept)):
            gaps.append(f"{label}.{name} holds free text; add it to personal_fields or KEPT_FIELDS")
        for name in sorted((set(holder.fields) | set(kept)) - {f.name for f in model._meta.concrete_fields}):
            gaps.append(f"{label}.{name} is named but is no column")
        if holder.parent and holder.parent_model not in covered:
            gaps.append(f"{label}.{holder.parent} leads to {holder.parent_model._meta.label}, which stores nothing")
    if every:  # a stale exclusion hides nothing, but says something false
        labels = {m._meta.label for m in models_}
        for label in sorted((set(KEPT_MODELS) | set(KEPT_FIELDS)) - labels):
            gaps.append(f"{label} is kept but is no model")
    return gaps

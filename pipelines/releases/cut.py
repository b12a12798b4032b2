"""Cutting a release: freeze the pipeline's whole resolved configuration, with the history
version of every object read, as its next numbered release. A release never changes once
cut (both databases refuse UPDATE and DELETE on its table, pipelines/db.py).
"""

import hashlib
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from audit.canonical import canonical_bytes, canonical_text, json_safe
from audit.services import audit_record
from governance.permissions import user_can
from pipelines.models import Pipeline, Release

_MODEL_FIELDS = (
    "provider",
    "model_name",
    "model_version",
    "base_url",
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "timeout_seconds",
    "extra_params",
    "price_input_per_1k",
    "price_output_per_1k",
)


_POLICY_FIELDS = (
    "review_mode",
    "confidence_threshold",
    "rules",
    "sample_rate",
    "required_approvals",
    "review_deadline_hours",
)


def _version_of(obj) -> int | None:
    """The id of the history record that describes ``obj`` as it is now."""
    latest = obj.history.order_by("-history_date", "-history_id").first()
    return latest.history_id if latest else None


def _plain(value):
    # Decimals keep their exact digits as strings; everything else is JSON already.
    return str(value) if isinstance(value, Decimal) else value


def release_snapshot(pipeline: Pipeline) -> dict:
    """The whole resolved configuration a release freezes, with the history
    version of every object it was read from."""
    steps = []
    for step in pipeline.steps.select_related("prompt", "model_config__credential").order_by("position"):
        prompt = step.prompt
        model = step.model_config
        steps.append(
            {
                "position": step.position,
                "name": step.name,
                "kind": step.kind,
                "config": step.config,
                "prompt": None
                if prompt is None
                else {
                    "id": prompt.pk,
                    "slug": prompt.slug,
                    "version": _version_of(prompt),
                    "body": prompt.body,
                    "variables": prompt.variables,
                },
                "model": None
                if model is None
                else {
                    "id": model.pk,
                    "slug": model.slug,
                    "version": _version_of(model),
                    **{name: _plain(getattr(model, name)) for name in _MODEL_FIELDS},
                    # The credential's slug, resolved in the run's workspace at call time; never a value.
                    "credential": model.credential.slug if model.credential_id else "",
                },
            }
        )
    policy = pipeline.approval_policy
    return {
        "keel_version": settings.KEEL_VERSION,
        "pipeline": {
            "id": pipeline.pk,
            "slug": pipeline.slug,
            "name": pipeline.name,
            "workspace_id": pipeline.workspace_id,
            "version": _version_of(pipeline),
        },
        "input_schema": pipeline.input_schema,
        "approval_policy": None
        if policy is None
        else {
            "id": policy.pk,
            "name": policy.name,
            "version": _version_of(policy),
            **{name: _plain(getattr(policy, name)) for name in _POLICY_FIELDS},
        },
        "steps": steps,
    }


def _fingerprint_of(snapshot: dict) -> str:
    # The versions say where the configuration was read from, not what it is:
    # two releases of the same configuration share a fingerprint.
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "version"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return hashlib.sha256(canonical_bytes(strip(snapshot))).hexdigest()


@transaction.atomic
def release_cut(*, pipeline: Pipeline, actor, notes: str = "") -> Release:
    """Freeze the pipeline's current configuration as its next release.

    1. Refuse without the change right on the pipeline.
    2. Validate every step again (a prompt may have changed since it was saved).
    3. Refuse when nothing changed since the newest release.
    4. Number it under a lock on the pipeline row and record ``release.cut``.
    """
    if not user_can(actor, "change", pipeline):
        raise PermissionDenied("Cutting a release needs the change right on the pipeline.")
    pipeline = Pipeline.objects.select_for_update().get(pk=pipeline.pk)
    steps = list(pipeline.steps.all())
    if not steps:
        raise ValidationError({"steps": "A pipeline needs at least one step before it can be released."})
    problems = []
    for step in steps:
        try:
            step.full_clean()
        except ValidationError as error:
            problems.extend(f"step {step.position} ({step.name}): {m}" for m in error.messages)
    if problems:
        raise ValidationError({"steps": problems})
    # A fixed seed or an extra parameter past ±(2**53 − 1) is kept as its
    # decimal string: canonical JSON holds I-JSON's integers only.
    snapshot = json_safe(release_snapshot(pipeline))
    fingerprint = _fingerprint_of(snapshot)
    newest = pipeline.releases.order_by("-number").first()
    if newest is not None and newest.fingerprint == fingerprint:
        raise ValidationError(f"Nothing changed since release #{newest.number}.")
    release = Release.objects.create(
        pipeline=pipeline,
        number=(newest.number + 1) if newest else 1,
        snapshot=canonical_text(snapshot),
        fingerprint=fingerprint,
        keel_version=settings.KEEL_VERSION,
        notes=notes,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    audit_record(
        action="release.cut",
        object_type="release",
        object_id=release.pk,
        payload={"pipeline": pipeline.slug, "number": release.number, "fingerprint": fingerprint, "notes": notes},
        workspace_id=pipeline.workspace_id,
        pipeline_id=pipeline.pk,
        actor=actor,
    )
    return release

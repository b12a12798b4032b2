"""Writes of the pipelines app."""

import hashlib
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from simple_history.utils import bulk_update_with_history

from audit.canonical import canonical_bytes, canonical_text, json_safe
from audit.services import audit_record
from governance.permissions import user_can
from governance.signals import audit_ids
from pipelines.models import Deployment, Pipeline, PromptTemplate, Release, Step

_STEP_FIELDS = ("position", "name", "kind", "config", "prompt_id", "model_config_id")


def _version_end(pipeline: Pipeline, version):
    """The last moment a pipeline version was current: just before the next
    pipeline record. Step edits saved with a pipeline land a moment after its
    record, so they belong to that version."""
    following = pipeline.history.filter(history_date__gt=version.history_date).order_by("history_date").first()
    if following is None:
        return None
    return following.history_date - timedelta(microseconds=1)


def pipeline_steps_at(*, pipeline: Pipeline, version) -> list[Step]:
    """The steps of ``pipeline`` as they were in ``version`` (one of its
    historical records), by position. The newest version's steps are the
    current ones, including step edits saved since its record."""
    end = _version_end(pipeline, version)
    if end is None:
        return list(pipeline.steps.order_by("position"))
    return sorted(Step.history.as_of(end).filter(pipeline_id=pipeline.pk), key=lambda step: step.position)


@transaction.atomic
def pipeline_steps_restore(*, pipeline: Pipeline, version, reason: str, actor) -> None:
    """Make the pipeline's steps what they were in ``version``.

    Steps absent then are deleted, steps that changed are updated and steps
    deleted since are re-created with their old ids, each save leaving its own
    history record with the reason. Positions are unique, so steps that move
    first step aside to a free position, without a history record of their own.
    """
    end = _version_end(pipeline, version)
    if end is None:
        return  # the version is the current one: its steps are the current steps
    target = {step.pk: step for step in Step.history.as_of(end).filter(pipeline_id=pipeline.pk)}
    current = {step.pk: step for step in pipeline.steps.all()}

    def save(step: Step) -> None:
        # The old version may name a prompt or model config deleted since:
        # refuse with a message rather than fail at commit.
        step.full_clean()
        step._change_reason = reason
        step._history_user = actor
        step.save()

    for pk in current.keys() - target.keys():
        step = current.pop(pk)
        step._change_reason = reason
        step._history_user = actor
        step.delete()
    changed = [pk for pk in current if any(getattr(current[pk], f) != getattr(target[pk], f) for f in _STEP_FIELDS)]
    spare = 10_000 + max([s.position for s in current.values()] + [0])
    for offset, pk in enumerate(changed):
        step = current[pk]
        step.position = spare + offset
        step.skip_history_when_saving = True
        step.save(update_fields=["position"])
        del step.skip_history_when_saving
    for pk in changed:
        step = current[pk]
        for field in _STEP_FIELDS:
            setattr(step, field, getattr(target[pk], field))
        save(step)
    for pk in target.keys() - current.keys():
        old = target[pk]
        step = Step(pk=pk, pipeline=pipeline, **{f: getattr(old, f) for f in _STEP_FIELDS})
        save(step)


# Models whose ownership moves in bulk; both have an ``owner`` and ``updated_at``.
_TRANSFERABLE = (PromptTemplate, Pipeline)


@transaction.atomic
def config_owner_transfer(*, queryset: QuerySet, new_owner, actor, reason: str) -> int:
    """Give many prompt templates or pipelines a new owner at once; returns how
    many changed hands (those already owned by ``new_owner`` are left alone).

    1. Refuse an empty reason, another model, an inactive owner, and the whole
       batch when the actor may not change any one object in it.
    2. Update the rows and write one history record each, with the actor and
       the reason, in two bulk statements.
    3. Record one ``<noun>.changed`` event per object here: a bulk history
       insert sends no ``post_create_historical_record`` signal, so the path in
       governance/signals.py that audits single saves does not run.
    """
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why ownership is changing."})
    model = queryset.model
    if model not in _TRANSFERABLE:
        raise ValidationError(f"Ownership transfers apply to prompt templates and pipelines, not {model.__name__}.")
    if new_owner is None or not new_owner.is_active:
        raise ValidationError({"new_owner": "Choose an active user as the new owner."})
    # Lock the rows themselves, not whatever the caller's queryset joins (an
    # admin changelist joins nullable relations, which FOR UPDATE refuses).
    objs = list(model.objects.filter(pk__in=queryset.values("pk")).select_for_update(of=("self",)).order_by("pk"))
    refused = [obj for obj in objs if not user_can(actor, "change", obj)]
    if refused:
        raise PermissionDenied(f"You may not change {', '.join(str(obj) for obj in refused)}; nothing was transferred.")
    moving = [obj for obj in objs if obj.owner_id != new_owner.pk]
    if not moving:
        return 0
    old_owners = {obj.pk: obj.owner_id for obj in moving}
    # One timestamp for the rows and their history records, so the records of
    # this transfer can be found again for their ids.
    now = timezone.now()
    for obj in moving:
        obj.owner = new_owner
        obj.updated_at = now
    bulk_update_with_history(
        moving,
        model,
        ["owner", "updated_at"],
        default_user=actor,
        default_change_reason=reason,
        default_date=now,
    )
    history_ids = dict(
        model.history.filter(id__in=old_owners, history_date=now, history_type="~").values_list("id", "history_id")
    )
    noun = model.audit_noun
    for obj in moving:
        audit_record(
            action=f"{noun}.changed",
            object_type=noun,
            object_id=obj.pk,
            payload={
                "history_id": history_ids.get(obj.pk),
                "reason": reason,
                "object": str(obj),
                "changes": {"owner": {"old": old_owners[obj.pk], "new": new_owner.pk}},
            },
            actor=actor,
            **audit_ids(obj),
        )
    return len(moving)


# Releases and deployments

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
                    # Azure's and Anthropic's settings, only where set: other snapshots stay as they were.
                    **{name: getattr(model, name) for name in ("deployment", "api_version") if getattr(model, name)},
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


def _move_pointer(*, deployment: Deployment, release: Release | None, actor, reason: str) -> Release | None:
    previous = deployment.release
    deployment.release = release
    deployment._change_reason = reason
    deployment._history_user = actor if getattr(actor, "is_authenticated", False) else None
    deployment.save()
    return previous


def _deployment_for_update(pipeline: Pipeline, environment: str) -> Deployment:
    if environment not in Deployment.Environment.values:
        raise ValidationError({"environment": f"Unknown environment {environment!r}."})
    Deployment.objects.get_or_create(pipeline=pipeline, environment=environment)
    return Deployment.objects.select_for_update().get(pipeline=pipeline, environment=environment)


@transaction.atomic
def deployment_set(*, release: Release, environment: str, actor, reason: str = "") -> Deployment:
    """Make ``release`` the live release of its pipeline in ``environment``."""
    pipeline = release.pipeline
    if not user_can(actor, "deploy_pipeline", pipeline):
        raise PermissionDenied("Deploying needs the deploy right on the pipeline.")
    # Production takes only an approved release whose evaluation passes
    # (pipelines/change.py); the pipeline row orders concurrent deploys.
    from pipelines.change import deployment_guard

    Pipeline.objects.select_for_update().get(pk=pipeline.pk)
    deployment = _deployment_for_update(pipeline, environment)
    deployment_guard(release, environment)
    if deployment.canary_release_id == release.pk:  # deploying the canary outright ends it
        deployment.canary_release, deployment.canary_share, deployment.canary_sources = None, Decimal("0"), []
        deployment.canary_started_at = None
    if deployment.release_id == release.pk:
        raise ValidationError(f"Release #{release.number} is already live in {environment}.")
    previous = _move_pointer(
        deployment=deployment, release=release, actor=actor, reason=reason or f"Deployed #{release.number}"
    )
    audit_record(
        action="deployment.set",
        object_type="deployment",
        object_id=deployment.pk,
        payload={
            "environment": environment,
            "release": release.number,
            "fingerprint": release.fingerprint,
            "previous_release": previous.number if previous else None,
            "reason": reason,
        },
        workspace_id=pipeline.workspace_id,
        pipeline_id=pipeline.pk,
        actor=actor,
    )
    return deployment


@transaction.atomic
def deployment_rollback(*, pipeline: Pipeline, environment: str, actor, reason: str) -> Deployment:
    """Put back the release that was live before the current one."""
    if not user_can(actor, "deploy_pipeline", pipeline):
        raise PermissionDenied("Rolling back needs the deploy right on the pipeline.")
    if not (reason or "").strip():
        raise ValidationError({"reason": "Say why you are rolling back."})
    deployment = _deployment_for_update(pipeline, environment)
    if deployment.release_id is None:
        raise ValidationError(f"Nothing is live in {environment} to roll back.")
    earlier = (
        deployment.history.exclude(release_id=deployment.release_id)
        .exclude(release_id=None)
        .order_by("-history_date", "-history_id")
        .first()
    )
    if earlier is None:
        raise ValidationError(f"No earlier release was live in {environment}.")
    target = Release.objects.get(pk=earlier.release_id)
    from pipelines.change import release_ever_approved

    if environment == Deployment.Environment.PRODUCTION and not release_ever_approved(target):
        raise ValidationError(f"Release #{target.number} was never approved (or is retired); it cannot go live.")
    current = _move_pointer(deployment=deployment, release=target, actor=actor, reason=f"Rolled back: {reason}")
    audit_record(
        action="deployment.rolled_back",
        object_type="deployment",
        object_id=deployment.pk,
        payload={
            "environment": environment,
            "from_release": current.number,
            "to_release": target.number,
            "fingerprint": target.fingerprint,
            "reason": reason,
        },
        workspace_id=pipeline.workspace_id,
        pipeline_id=pipeline.pk,
        actor=actor,
    )
    return deployment

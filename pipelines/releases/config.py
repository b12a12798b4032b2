"""The governed configuration a release is cut from: its steps as they were at a version,
restoring them, and moving ownership in bulk. Every write leaves a history record with
its actor and reason, and an audit event.
"""

from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.dispatch import receiver
from django.utils import timezone
from simple_history.utils import bulk_update_with_history

from audit.services import audit_record
from governance.permissions import user_can
from governance.signals import audit_ids, history_reverted
from pipelines.models import Pipeline, PromptTemplate, Step

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


@receiver(history_reverted, sender=Pipeline)
def pipeline_steps_follow_revert(sender, *, instance: Pipeline, version, reason: str, actor, **kwargs) -> None:
    """A pipeline reverted to a version gets that version's steps back: a version includes its steps."""
    pipeline_steps_restore(pipeline=instance, version=version, reason=reason, actor=actor)


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

"""Writes of the pipelines app."""

from datetime import timedelta

from django.db import transaction

from pipelines.models import Pipeline, Step

_STEP_FIELDS = ("position", "name", "kind", "config", "prompt_id", "model_config_id")


def _version_end(pipeline: Pipeline, version):
    """The last moment a pipeline version was current: just before the next
    pipeline record. Step edits saved with a pipeline land a moment after its
    record, so they belong to that version."""
    following = pipeline.history.filter(history_date__gt=version.history_date).order_by("history_date").first()
    if following is None:
        return None
    return following.history_date - timedelta(microseconds=1)


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

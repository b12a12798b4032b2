"""The reviewer web app at /review/: a queue, a task page with its decisions,
and the reviewer's own history. Every view reads tasks of pipelines the user
holds review_output on, and nothing else: any other task is a 404."""

import functools
import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from governance.permissions import permission_cache, user_can
from pipelines.models import Pipeline, StepRun
from pipelines.releases.pause import run_release_withdrawn, runs_release_withdrawn
from reviews.charts import metrics_charts
from reviews.forms import DecisionForm, MinutesForm, OutputEditForm, QAForm, QueueFilterForm, output_choices
from reviews.metrics import review_metrics, review_metrics_daily
from reviews.models import ReviewTask
from reviews.presentation import output_changes, present
from reviews.selectors import (
    pipelines_reviewable_by,
    review_approvals_pending,
    review_decisions_by,
    review_queue_counts_cached,
    review_queue_for_user,
    review_queue_titles,
)
from reviews.services import (
    review_approval_hold,
    review_approval_undo,
    review_claim,
    review_decide,
    review_qa_record,
    review_release,
    review_settings_set,
    undo_seconds,
)


def reviewer_login(view):
    """Signed in, and one permission cache for the request: the view and the
    services it calls check the same right on the same pipeline, and guardian
    would ask the database each time (see governance.permissions)."""

    @functools.wraps(view)
    def scoped(request, *args, **kwargs):
        with permission_cache():
            return view(request, *args, **kwargs)

    return login_required(login_url="reviews-login")(scoped)


# What the task page shows beside the task; a POST needs only the pipeline
# (its right), since its service reads and locks the rest again.
PAGE_RELATED = ("pipeline", "run", "run__release", "claimed_by")


def _task_for(user, pk: int, related=("pipeline",)) -> ReviewTask:
    # By key, then the right on its pipeline: the same answer as filtering
    # review_tasks_for_user, without the permission subquery on every page.
    task = get_object_or_404(ReviewTask.objects.select_related(*related), pk=pk)
    if not user_can(user, "review_output", task.pipeline):
        raise Http404("No such review.")
    return task


def _message(error: ValidationError | PermissionDenied) -> str:
    return " ".join(error.messages) if isinstance(error, ValidationError) else str(error)


@reviewer_login
def queue(request):
    pipelines = list(pipelines_reviewable_by(request.user).order_by("name"))
    form = QueueFilterForm(request.GET or None, pipelines=pipelines)
    filters = form.cleaned_data if form.is_valid() else {}
    reviewable = [p.pk for p in pipelines]
    tasks = review_queue_for_user(
        user=request.user, pipeline=filters.get("pipeline", ""), reason=filters.get("reason", ""),
        age_hours=filters.get("age"), reviewable=reviewable,
    )  # fmt: skip
    counts = review_queue_counts_cached(tasks, pipeline_ids=reviewable, filters=filters)
    paginator = Paginator(tasks, 25)
    paginator.count = counts["total"]  # already counted: spare the paginator its own COUNT
    page = paginator.get_page(request.GET.get("page"))
    # Runs of a release rolled back since they were held carry a flag on their row.
    withdrawn = runs_release_withdrawn([task.run_id for task in page.object_list])
    titles = review_queue_titles(page.object_list)
    for task in page.object_list:
        task.release_withdrawn = task.run_id in withdrawn
        task.title, task.excerpt = titles.get(task.pk, ("", ""))
    context = {"form": form, "page": page, "counts": counts, "now": timezone.now(),
               "pending": review_approvals_pending(user=request.user)}  # fmt: skip
    return render(request, "reviews/queue.html", context, status=400 if form.errors else 200)


def _detail_context(task: ReviewTask, request, *, edit_form: OutputEditForm | None = None) -> dict:
    steps = list(StepRun.objects.filter(run_id=task.run_id).order_by("position"))
    for step in steps:
        step.output_json = json.dumps(step.output, indent=2, ensure_ascii=False)
        step.shown = present(step.output)
    gate = next((s for s in steps if s.position == task.position), None)
    # Show the input as the pipeline's last redaction before the gate left it,
    # and hide what earlier steps saw: a reviewer never needs the raw PII.
    redact = [s for s in steps if s.kind == "redact" and s.position < task.position and s.output is not None]
    shown_input = redact[-1].output if redact else task.run.input
    first_visible = redact[-1].position if redact else 0
    # What the gate was shown (its output until a reviewed one replaced it).
    held_output = gate.input if gate else None
    decisions = list(task.decisions.select_related("reviewer"))
    for decision in decisions:
        if decision.edited_output is not None:
            decision.changes = output_changes(decision.original_output, decision.edited_output)
    if edit_form is None and isinstance(held_output, dict):
        edit_form = OutputEditForm(original=held_output, choices=output_choices(task.run.release.snapshot_data,
                                                                                task.position))  # fmt: skip
    return {
        "task": task,
        "run": task.run,
        "release": task.run.release,
        "title": _title(task, held_output),
        # Rolled back since the run was held: the reviewer decides with that in view.
        "release_withdrawn": run_release_withdrawn(task.run),
        "input_fields": present(shown_input),
        "shown_input": json.dumps(shown_input, indent=2, ensure_ascii=False),
        "redacted": bool(redact),
        "output": held_output,
        "output_fields": present(held_output),
        "output_json": json.dumps(held_output, indent=2, ensure_ascii=False),
        "steps": [s for s in steps if first_visible <= s.position < task.position],
        "hidden_steps": first_visible - 1 if first_visible else 0,
        "decisions": decisions,
        "holder": task.claim_holder(),
        "decision_form": DecisionForm(),
        "edit_form": edit_form,
        "qa_form": QAForm(),
        "pending": review_approvals_pending(user=request.user),
        "undo_seconds": undo_seconds(),
    }


def _title(task: ReviewTask, output) -> str:
    field = task.pipeline.title_field
    value = output.get(field) if isinstance(output, dict) and field else None
    return value if isinstance(value, str) else ""


@reviewer_login
def detail(request, pk: int):
    task = _task_for(request.user, pk, PAGE_RELATED)
    if task.status == ReviewTask.Status.OPEN:
        try:
            task = review_claim(task=task, actor=request.user)  # opening a task claims it
        except ValidationError as error:
            messages.warning(request, _message(error))
    return render(request, "reviews/detail.html", _detail_context(task, request))


def _refused(request, task: ReviewTask, error, *, form=None, qa_form=None, edit_form=None):
    task = _task_for(request.user, task.pk, PAGE_RELATED)
    context = _detail_context(task, request, edit_form=edit_form)
    context.update({k: v for k, v in (("decision_form", form), ("qa_form", qa_form)) if v is not None})
    context["error"] = _message(error) if error else ""
    status = 403 if isinstance(error, PermissionDenied) else 409 if task.status != ReviewTask.Status.OPEN else 400
    return render(request, "reviews/detail.html", context, status=status)


@reviewer_login
@require_POST
def decide(request, pk: int):
    """Approve (held for the undo window), edit field by field and approve, or reject."""
    task = _task_for(request.user, pk)
    form = DecisionForm(request.POST)
    edit_form = None
    if form.is_valid() and form.cleaned_data["decision"] == "edit":
        edit_form = OutputEditForm(request.POST, original=_held_output(task),
                                   choices=output_choices(task.run.release.snapshot_data, task.position))  # fmt: skip
    if not form.is_valid() or (edit_form is not None and not edit_form.is_valid()):
        return _refused(request, task, None, form=form, edit_form=edit_form)
    decision = form.cleaned_data["decision"]
    try:
        if decision == "approve":
            review_approval_hold(task=task, actor=request.user)
        else:
            review_decide(task=task, actor=request.user, decision=decision, reason=form.cleaned_data["reason"],
                          edited_output=edit_form.cleaned_data["edited_output"] if edit_form else None)  # fmt: skip
    except (ValidationError, PermissionDenied) as error:
        if isinstance(error, ValidationError) and hasattr(error, "error_dict"):
            for field, problems in error.message_dict.items():
                target = form if field in form.fields else edit_form if edit_form is not None else form
                target.add_error(field if field in target.fields else None, problems)
            return _refused(request, task, None, form=form, edit_form=edit_form)
        return _refused(request, task, error, form=form, edit_form=edit_form)
    if decision != "approve":  # an approval is announced by its undo bar on the next page
        done = {"edit": "edited and approved", "reject": "rejected"}[decision]
        messages.success(request, f"Review {task.pk}: {done}.")
    return redirect(f"{reverse('reviews-next')}?after={task.pk}")


def _held_output(task: ReviewTask):
    gate = StepRun.objects.filter(run_id=task.run_id, position=task.position).only("input").first()
    return gate.input if gate else None


@reviewer_login
@require_POST
def undo(request, pk: int):
    """Take back one's approval within its undo window."""
    task = _task_for(request.user, pk)
    try:
        review_approval_undo(task=task, actor=request.user)
    except ValidationError as error:
        messages.error(request, _message(error))
        return redirect("reviews-queue")
    messages.info(request, f"Approval of review {task.pk} undone: nothing was recorded, and it is still yours.")
    return redirect(task)


@reviewer_login
@require_POST
def qa(request, pk: int):
    task = _task_for(request.user, pk)
    form = QAForm(request.POST)
    if not form.is_valid():
        return _refused(request, task, None, qa_form=form)
    try:
        review_qa_record(task=task, actor=request.user, **form.cleaned_data)
    except (ValidationError, PermissionDenied) as error:
        return _refused(request, task, error, qa_form=form)
    messages.success(request, f"QA sample {task.pk}: marked {form.cleaned_data['verdict']}.")
    return redirect(f"{reverse('reviews-next')}?after={task.pk}")


@reviewer_login
@require_POST
def release(request, pk: int):
    task = _task_for(request.user, pk)
    review_release(task=task, actor=request.user)
    return redirect("reviews-queue")


@reviewer_login
def next_task(request):
    """The next task to work: soonest deadline, not held by someone else."""
    now = timezone.now()
    tasks = review_queue_for_user(user=request.user).filter(
        Q(claimed_by__isnull=True) | Q(claimed_by=request.user) | Q(claim_expires_at__lte=now)
    )
    # Not one the user just approved: it waits out its undo window.
    tasks = tasks.exclude(pending_approvals__reviewer=request.user)
    after = request.GET.get("after", "")
    if after.isdigit():
        tasks = tasks.exclude(pk=int(after))
    task = tasks.first()
    if task is None:
        messages.info(request, "Nothing left in your queue.")
        return redirect("reviews-queue")
    return redirect(task)


@reviewer_login
def mine(request):
    page = Paginator(review_decisions_by(user=request.user), 50).get_page(request.GET.get("page"))
    return render(request, "reviews/mine.html", {"page": page})


def _pipeline_for_metrics(user, slug: str) -> Pipeline:
    pipeline = get_object_or_404(Pipeline.objects.select_related("owner"), slug=slug)
    if not (user_can(user, "review_output", pipeline) or user_can(user, "view", pipeline)):
        raise Http404("No such pipeline.")
    return pipeline


@reviewer_login
def metrics(request, slug: str):
    """Per pipeline (and release, with ?release=N): is the pipeline paying?"""
    pipeline = _pipeline_for_metrics(request.user, slug)
    releases = list(pipeline.releases.order_by("-number"))
    number = request.GET.get("release", "")
    release = next((r for r in releases if str(r.number) == number), None)
    status = 200
    form = MinutesForm(request.POST or None)
    # The form is shown to whom review_settings_set allows: the pipeline's owner.
    may_set = pipeline.owner_id == request.user.pk
    if request.method == "POST":
        if form.is_valid():
            try:
                review_settings_set(pipeline=pipeline, minutes_per_item=form.cleaned_data["minutes_per_item"],
                                    actor=request.user)  # fmt: skip
            except PermissionDenied as error:
                form.add_error(None, str(error))
                status = 403
            else:
                messages.success(request, "Minutes per item saved.")
                return redirect(request.get_full_path())
        else:
            status = 400
    days = review_metrics_daily(pipeline=pipeline, release=release)
    context = {"pipeline": pipeline, "releases": releases, "release": release, "form": form, "may_set": may_set,
               "m": review_metrics(pipeline=pipeline, release=release), "charts": metrics_charts(days)}  # fmt: skip
    return render(request, "reviews/metrics.html", context, status=status)

"""Release control in the admin: submit, approve, reject, retire, evaluate,
canary, promote, roll back to a chosen release, pause and unpause; the
approver's review page (diff against production and the evaluation) and the
"what was live at time T" page. Every action calls its service, which checks
the rights on each object; a refusal is shown with its reason."""

import json

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse

from governance.admin_base import GovernedModelAdmin
from governance.models import change_policy_for
from governance.permissions import filter_for_user, user_can
from pipelines.admin.actions import ReasonForm, act_on_each, action_form
from pipelines.evaluation.services import evaluation_case_from_run, evaluation_cases_import, release_evaluate
from pipelines.models import Deployment, Evaluation, EvaluationCase, EvaluationResult, Pipeline, Release
from pipelines.releases.approval import (
    release_approve,
    release_approvers,
    release_reject,
    release_retire,
    release_state,
    release_submit,
)
from pipelines.releases.as_of import parse_moment, pipeline_as_of
from pipelines.releases.canary import canary_promote, canary_rollback, canary_set
from pipelines.releases.deploy import deployment_rollback
from pipelines.releases.diff import release_diff
from pipelines.releases.gate import evaluation_latest, release_gate_problems
from pipelines.releases.pause import pipeline_pause, pipeline_unpause


class NotesForm(forms.Form):
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="What the release changes and why.")


class CanaryForm(forms.Form):
    share = forms.DecimalField(min_value=0, max_value=100, decimal_places=2, help_text="Percent of traffic (0 to 100).")
    sources = forms.CharField(required=False, help_text="Sources always sent to the canary, comma-separated.")


class RollbackForm(forms.Form):
    to = forms.IntegerField(min_value=1, label="Release number", help_text="An earlier approved release.")
    reason = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


# Release actions


@admin.action(description="Submit for approval")
def submit_releases(modeladmin, request, queryset):
    form, page = action_form(
        modeladmin, request, queryset, NotesForm, action="submit_releases", title="Submit for approval", verb="Submit"
    )
    if page:
        return page
    notes = form.cleaned_data["notes"]
    act_on_each(
        modeladmin,
        request,
        queryset.select_related("pipeline"),
        lambda r: release_submit(release=r, actor=request.user, notes=notes),
        "{obj} submitted.",
    )


@admin.action(description="Approve")
def approve_releases(modeladmin, request, queryset):
    act_on_each(
        modeladmin,
        request,
        queryset.select_related("pipeline"),
        lambda r: release_approve(release=r, actor=request.user),
        "{obj}: your approval is recorded ({result.state}).",
    )


@admin.action(description="Reject")
def reject_releases(modeladmin, request, queryset):
    form, page = action_form(
        modeladmin, request, queryset, ReasonForm, action="reject_releases", title="Reject", verb="Reject"
    )
    if page:
        return page
    reason = form.cleaned_data["reason"]
    act_on_each(
        modeladmin,
        request,
        queryset.select_related("pipeline"),
        lambda r: release_reject(release=r, actor=request.user, reason=reason),
        "{obj} rejected.",
    )


@admin.action(description="Retire")
def retire_releases(modeladmin, request, queryset):
    form, page = action_form(
        modeladmin, request, queryset, ReasonForm, action="retire_releases", title="Retire", verb="Retire"
    )
    if page:
        return page
    reason = form.cleaned_data["reason"]
    act_on_each(
        modeladmin,
        request,
        queryset.select_related("pipeline"),
        lambda r: release_retire(release=r, actor=request.user, reason=reason),
        "{obj} retired.",
    )


@admin.action(description="Evaluate on the pipeline's cases")
def evaluate_releases(modeladmin, request, queryset):
    act_on_each(
        modeladmin,
        request,
        queryset.select_related("pipeline"),
        lambda r: release_evaluate(release=r, actor=request.user),
        "{obj}: evaluation of {result.total} cases queued; a worker runs it (see Evaluations for its progress).",
    )


@admin.action(description="Start or change a production canary")
def start_canary(modeladmin, request, queryset):
    form, page = action_form(
        modeladmin, request, queryset, CanaryForm, action="start_canary", title="Production canary", verb="Start canary"
    )
    if page:
        return page
    share = form.cleaned_data["share"]
    sources = [s for s in form.cleaned_data["sources"].split(",") if s.strip()]
    act_on_each(
        modeladmin,
        request,
        queryset.select_related("pipeline"),
        lambda r: canary_set(release=r, share=share, sources=sources, actor=request.user),
        "{obj} is the canary at " + f"{share}%.",
    )


RELEASE_ACTIONS = [submit_releases, approve_releases, reject_releases, retire_releases, evaluate_releases, start_canary]


def release_review_view(modeladmin, request, object_id):
    """The approver's page: state, approvals, the gate, the evaluation and the
    diff against production's live release."""
    release = get_object_or_404(modeladmin.get_queryset(request).select_related("pipeline"), pk=object_id)
    pipeline = release.pipeline
    live = Deployment.objects.filter(pipeline=pipeline, environment="production").select_related("release").first()
    base = live.release if live and live.release_id else None
    evaluation = evaluation_latest(release)
    results = evaluation.results.select_related("case") if evaluation else EvaluationResult.objects.none()
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": f"Review {release}",
        "opts": modeladmin.model._meta,
        "release": release,
        "state": release_state(release),
        "approvers": release_approvers(release),
        "policy": change_policy_for(pipeline),
        "problems": release_gate_problems(release),
        "base": base,
        "diff": release_diff(base.snapshot_data if base else None, release.snapshot_data),
        "evaluation": evaluation,
        "results": results,
        "transitions": release.transitions.select_related("actor").order_by("pk"),
        "may_approve": user_can(request.user, "approve_release", pipeline),
    }
    return TemplateResponse(request, "admin/keel/release_review.html", context)


# Deployment and pipeline actions


@admin.action(description="Roll back to a chosen earlier release")
def rollback_to(modeladmin, request, queryset):
    form, page = action_form(
        modeladmin,
        request,
        queryset,
        RollbackForm,
        action="rollback_to",
        title="Roll back production to an earlier approved release",
        verb="Roll back",
    )
    if page:
        return page
    number, reason = form.cleaned_data["to"], form.cleaned_data["reason"]
    pipelines = {d.pipeline for d in queryset.select_related("pipeline")}
    act_on_each(
        modeladmin,
        request,
        pipelines,
        lambda p: deployment_rollback(pipeline=p, to_number=number, actor=request.user, reason=reason),
        "{obj}: release " + f"#{number} is live in production.",
    )


@admin.action(description="Promote the canary to all traffic")
def promote_canary(modeladmin, request, queryset):
    pipelines = {d.pipeline for d in queryset.select_related("pipeline")}
    act_on_each(
        modeladmin,
        request,
        pipelines,
        lambda p: canary_promote(pipeline=p, actor=request.user),
        "{obj}: canary promoted.",
    )


@admin.action(description="Stop the canary (share 0%%)")
def stop_canary(modeladmin, request, queryset):
    form, page = action_form(
        modeladmin, request, queryset, ReasonForm, action="stop_canary", title="Stop the canary", verb="Stop"
    )
    if page:
        return page
    reason = form.cleaned_data["reason"]
    pipelines = {d.pipeline for d in queryset.select_related("pipeline")}
    act_on_each(
        modeladmin,
        request,
        pipelines,
        lambda p: canary_rollback(pipeline=p, actor=request.user, reason=reason),
        "{obj}: canary stopped.",
    )


def _pipelines_of(queryset) -> list[Pipeline]:
    if queryset.model is Pipeline:
        return list(queryset)
    return list({d.pipeline for d in queryset.select_related("pipeline")})


@admin.action(description="Emergency pause (stop new runs, hold deliveries)")
def pause_pipelines(modeladmin, request, queryset):
    form, page = action_form(
        modeladmin, request, queryset, ReasonForm, action="pause_pipelines", title="Emergency pause", verb="Pause"
    )
    if page:
        return page
    reason = form.cleaned_data["reason"]
    act_on_each(
        modeladmin,
        request,
        _pipelines_of(queryset),
        lambda p: pipeline_pause(pipeline=p, actor=request.user, reason=reason),
        "{obj} is paused.",
    )


@admin.action(description="Unpause (send held deliveries)")
def unpause_pipelines(modeladmin, request, queryset):
    act_on_each(
        modeladmin,
        request,
        _pipelines_of(queryset),
        lambda p: pipeline_unpause(pipeline=p, actor=request.user),
        "{obj} unpaused; {result} held deliveries are being sent.",
    )


DEPLOYMENT_ACTIONS = [rollback_to, promote_canary, stop_canary, pause_pipelines, unpause_pipelines]


class AsOfForm(forms.Form):
    pipeline = forms.ModelChoiceField(queryset=Pipeline.objects.none())
    at = forms.CharField(label="Moment", help_text="ISO 8601, e.g. 2026-11-03T14:00Z (UTC when no zone is given).")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["pipeline"].queryset = filter_for_user(user, "view", Pipeline.objects.all())

    def clean_at(self):
        return parse_moment(self.cleaned_data["at"])


def as_of_view(modeladmin, request):
    """What was live at a moment, for a pipeline the user may view."""
    if not modeladmin.has_view_permission(request):
        raise PermissionDenied
    form = AsOfForm(request.GET or None, user=request.user)
    answer = None
    if form.is_valid():
        answer = pipeline_as_of(pipeline=form.cleaned_data["pipeline"], at=form.cleaned_data["at"])
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "What was live at a moment",
        "opts": modeladmin.model._meta,
        "form": form,
        "answer": answer,
        "answer_json": json.dumps(answer, indent=2, ensure_ascii=False) if answer else "",
    }
    return TemplateResponse(request, "admin/keel/as_of.html", context)


# Evaluation cases


class ImportForm(forms.Form):
    pipeline = forms.ModelChoiceField(queryset=Pipeline.objects.none())
    file = forms.FileField(help_text="CSV with a header row, or JSONL (one case per line).")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["pipeline"].queryset = filter_for_user(user, "change", Pipeline.objects.all())


@admin.register(EvaluationCase)
class EvaluationCaseAdmin(GovernedModelAdmin):
    list_display = ("name", "pipeline", "expected_label", "max_length", "created_at")
    list_select_related = ("pipeline",)
    search_fields = ("name", "expected_label")
    readonly_fields = ("source_run", "created_at")
    change_list_template = "admin/keel/evaluation_case_changelist.html"

    def get_urls(self):
        from django.urls import path

        urls = [path("import/", self.admin_site.admin_view(self.import_view), name="pipelines_evaluationcase_import")]
        return urls + super().get_urls()

    def import_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ImportForm(request.POST or None, request.FILES or None, user=request.user)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            fmt = "jsonl" if upload.name.lower().endswith((".jsonl", ".ndjson")) else "csv"
            try:
                text = upload.read().decode("utf-8")
                count = evaluation_cases_import(
                    pipeline=form.cleaned_data["pipeline"], actor=request.user, text=text, fmt=fmt
                )
            except UnicodeDecodeError:
                form.add_error("file", "The file must be UTF-8 text.")
            except (ValidationError, PermissionDenied) as error:
                for message in error.messages if isinstance(error, ValidationError) else [str(error)]:
                    form.add_error("file", message)
            else:
                self.message_user(request, f"Imported {count} cases; nothing else changed.")
                from django.shortcuts import redirect

                return redirect("admin:pipelines_evaluationcase_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": "Import evaluation cases",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/keel/evaluation_import.html", context)


class EvaluationResultInline(admin.TabularInline):
    model = EvaluationResult
    extra = 0
    can_delete = False
    fields = ("case", "passed", "comparison", "baseline_passed", "held", "failures")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Evaluation)
class EvaluationAdmin(GovernedModelAdmin):
    list_display = (
        "release",
        "status",
        "progress",
        "baseline",
        "cases",
        "passed",
        "fixed",
        "broken",
        "unchanged",
        "created_by",
        "created_at",
    )
    list_select_related = ("release__pipeline", "baseline", "created_by")
    list_filter = ("status",)
    readonly_fields = (
        "release",
        "status",
        "progress",
        "error",
        "baseline",
        "cases",
        "passed",
        "fixed",
        "broken",
        "unchanged",
        "created_by",
        "created_at",
        "finished_at",
    )
    inlines = [EvaluationResultInline]

    @admin.display(description="progress")
    def progress(self, obj: Evaluation) -> str:
        return f"{obj.done} of {obj.total} cases"

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.action(description="Make each selected run an evaluation case")
def runs_to_cases(modeladmin, request, queryset):
    act_on_each(
        modeladmin,
        request,
        queryset.select_related("pipeline"),
        lambda r: evaluation_case_from_run(run=r, actor=request.user),
        "Run {obj.pk} is now case {result}.",
    )


__all__ = ["DEPLOYMENT_ACTIONS", "RELEASE_ACTIONS", "Release", "as_of_view", "release_review_view", "runs_to_cases"]

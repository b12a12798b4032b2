"""Releases, deployments and runs in the admin: all read-only records; cutting,
deploying, rolling back, cancelling and retrying are actions that call their
services, which check the rights on each object."""

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import OuterRef, Subquery
from django.utils.html import format_html

from audit.services import audit_record
from governance.admin_base import GovernedModelAdmin
from pipelines.admin.actions import ReasonForm, action_form, refusal
from pipelines.admin.release_control import (
    DEPLOYMENT_ACTIONS,
    RELEASE_ACTIONS,
    as_of_view,
    release_review_view,
    runs_to_cases,
)
from pipelines.delivery.reports import ReportUnavailable, report_rebuild
from pipelines.models import Delivery, Deployment, Release, ReleaseTransition, Run, StepRun
from pipelines.releases.cut import release_cut
from pipelines.releases.deploy import deployment_rollback, deployment_set
from pipelines.runs.engine import run_cancel, run_retry


@admin.action(description="Cut a release of the selected pipelines")
def cut_release(modeladmin, request, queryset):
    for pipeline in queryset:
        try:
            release = release_cut(pipeline=pipeline, actor=request.user)
        except (ValidationError, PermissionDenied) as error:
            modeladmin.message_user(request, f"{pipeline}: {refusal(error)}", messages.ERROR)
        else:
            modeladmin.message_user(
                request, f"{pipeline}: cut release #{release.number} ({release.short_fingerprint})."
            )


def _deploy(modeladmin, request, queryset, environment: str) -> None:
    for release in queryset.select_related("pipeline"):
        try:
            deployment_set(release=release, environment=environment, actor=request.user)
        except (ValidationError, PermissionDenied) as error:
            modeladmin.message_user(request, f"{release}: {refusal(error)}", messages.ERROR)
        else:
            modeladmin.message_user(request, f"{release} is live in {environment}.")


@admin.action(description="Deploy to staging")
def deploy_staging(modeladmin, request, queryset):
    _deploy(modeladmin, request, queryset, Deployment.Environment.STAGING)


@admin.action(description="Deploy to production")
def deploy_production(modeladmin, request, queryset):
    _deploy(modeladmin, request, queryset, Deployment.Environment.PRODUCTION)


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    fields = ("position", "delivery_id", "event", "channel", "url", "status", "attempts", "last_status_code",
              "receiver", "last_error", "delivered_at")  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.action(description="Roll back to the previously live release")
def roll_back(modeladmin, request, queryset):
    form, page = action_form(
        modeladmin, request, queryset, ReasonForm, action="roll_back",
        title="Roll back to the release live before the current one", verb="Roll back",
    )  # fmt: skip
    if page:
        return page
    for deployment in queryset.select_related("pipeline"):
        try:
            deployment_rollback(
                pipeline=deployment.pipeline,
                environment=deployment.environment,
                actor=request.user,
                reason=form.cleaned_data["reason"],
            )
        except (ValidationError, PermissionDenied) as error:
            modeladmin.message_user(request, f"{deployment}: {refusal(error)}", messages.ERROR)
        else:
            modeladmin.message_user(request, f"Rolled back: {Deployment.objects.get(pk=deployment.pk)}.")
    return None


class ReadOnlyMixin:
    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Release)
class ReleaseAdmin(ReadOnlyMixin, GovernedModelAdmin):
    list_display = ("__str__", "pipeline", "number", "state", "short_fingerprint", "created_by", "created_at")
    list_filter = ("pipeline",)
    list_select_related = ("pipeline", "created_by")
    search_fields = ("pipeline__slug", "fingerprint", "notes")
    readonly_fields = ("pipeline", "number", "fingerprint", "keel_version", "notes", "created_by", "created_at")
    fields = (*readonly_fields, "review_link", "snapshot_pretty")
    actions = [deploy_staging, deploy_production, *RELEASE_ACTIONS]
    action_rights = {
        "deploy_staging": ("deploy_pipeline",),
        "deploy_production": ("deploy_pipeline",),
        "approve_releases": ("approve_release",),
        "reject_releases": ("approve_release",),
        "retire_releases": ("deploy_pipeline",),
        "evaluate_releases": ("change", "approve_release"),
        "start_canary": ("deploy_pipeline",),
    }

    def get_list_filter(self, request):
        return ()  # a pipeline filter would name pipelines of other clients

    def get_actions(self, request):
        # Actions need no model permission here: the services check the
        # deploy right on each release's pipeline.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def get_queryset(self, request):
        # The state is the newest transition other than a single vote, in the same query.
        latest = ReleaseTransition.objects.filter(release=OuterRef("pk")).exclude(state="approval").order_by("-pk")
        return super().get_queryset(request).annotate(latest_state=Subquery(latest.values("state")[:1]))

    @admin.display(description="state", ordering="latest_state")
    def state(self, obj):
        return getattr(obj, "latest_state", None) or "draft"

    def get_urls(self):
        from django.urls import path

        review = self.admin_site.admin_view(lambda request, object_id: release_review_view(self, request, object_id))
        return [path("<int:object_id>/review/", review, name="pipelines_release_review"), *super().get_urls()]

    @admin.display(description="review")
    def review_link(self, obj):
        from django.urls import reverse

        url = reverse("admin:pipelines_release_review", args=[obj.pk])
        return format_html('<a href="{}">Diff against production, evaluation and approvals</a>', url)

    @admin.display(description="snapshot")
    def snapshot_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.snapshot_data, indent=2, ensure_ascii=False))


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyMixin, GovernedModelAdmin):
    list_display = ("pipeline", "environment", "release", "canary_release", "canary_share", "paused", "updated_at")
    list_select_related = ("pipeline", "release", "canary_release")
    list_filter = ("environment", "paused")
    readonly_fields = ("pipeline", "environment", "release", "canary_release", "canary_share", "canary_sources",
                       "canary_started_at", "paused", "pause_reason", "updated_at")  # fmt: skip
    actions = [roll_back, *DEPLOYMENT_ACTIONS]
    action_rights = {action.__name__: ("deploy_pipeline",) for action in actions}
    change_list_template = "admin/keel/deployment_changelist.html"

    def get_urls(self):
        from django.urls import path

        as_of = self.admin_site.admin_view(lambda request: as_of_view(self, request))
        return [path("as-of/", as_of, name="pipelines_deployment_as_of"), *super().get_urls()]

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


class StepRunInline(admin.TabularInline):
    model = StepRun
    extra = 0
    can_delete = False
    fields = ("position", "name", "kind", "status", "output_sha256", "input_tokens", "output_tokens", "cost", "error")
    readonly_fields = fields
    ordering = ("position",)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.action(description="Cancel the selected runs")
def cancel_runs(modeladmin, request, queryset):
    form, page = action_form(
        modeladmin, request, queryset, ReasonForm, action="cancel_runs", title="Cancel runs", verb="Cancel"
    )
    if page:
        return page
    for run in queryset:
        try:
            run_cancel(run=run, actor=request.user, reason=form.cleaned_data["reason"])
        except (ValidationError, PermissionDenied) as error:
            modeladmin.message_user(request, f"Run {run.pk}: {refusal(error)}", messages.ERROR)
        else:
            modeladmin.message_user(request, f"Run {run.pk} cancelled.")
    return None


@admin.action(description="Retry the selected failed runs")
def retry_runs(modeladmin, request, queryset):
    for run in queryset:
        try:
            run_retry(run=run, actor=request.user)
        except (ValidationError, PermissionDenied) as error:
            modeladmin.message_user(request, f"Run {run.pk}: {refusal(error)}", messages.ERROR)
        else:
            modeladmin.message_user(request, f"Run {run.pk} is queued again.")


@admin.register(Run)
class RunAdmin(ReadOnlyMixin, GovernedModelAdmin):
    list_display = ("pk", "pipeline", "release", "status", "trigger", "source", "created_at", "finished_at")
    list_filter = ("status", "trigger", "environment")
    list_select_related = ("pipeline", "release", "release__pipeline")
    search_fields = ("=pk", "idempotency_key", "source")
    date_hierarchy = "created_at"
    show_full_result_count = False
    readonly_fields = (
        "pipeline", "release", "environment", "status", "trigger", "source", "actor", "idempotency_key", "seed",
        "input_sha256", "next_position", "attempts", "failure_reason", "created_at", "started_at", "finished_at",
        "input", "output", "pdf_reports",
    )  # fmt: skip
    inlines = [StepRunInline, DeliveryInline]
    actions = [cancel_runs, retry_runs, runs_to_cases]
    action_rights = {"cancel_runs": ("deploy_pipeline",), "retry_runs": ("deploy_pipeline",)}

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def get_urls(self):
        from django.urls import path

        report = self.admin_site.admin_view(self.report_view)
        return [path("<int:object_id>/report/<int:position>/", report, name="pipelines_run_report"),
                *super().get_urls()]  # fmt: skip

    @admin.display(description="PDF reports")
    def pdf_reports(self, obj):
        from django.urls import reverse
        from django.utils.html import format_html_join
        from django.utils.safestring import mark_safe

        steps = obj.steps.filter(kind="deliver", decision__format="pdf").order_by("position")
        links = [
            (reverse("admin:pipelines_run_report", args=[obj.pk, s.position]), s.position, s.decision["pdf_sha256"])
            for s in steps
            if (s.decision or {}).get("pdf_sha256")
        ]
        if not links:
            return "-"
        return format_html_join(mark_safe("<br>"), '<a href="{}">Step {} report (PDF, SHA-256 {})</a>', links)

    def report_view(self, request, object_id, position):
        """Download a deliver step's PDF report: rebuilt from the run and
        served only if it is the very bytes recorded (pipelines/delivery/reports.py)."""
        from django.http import Http404, HttpResponse
        from django.shortcuts import redirect

        run = self.get_object(request, str(object_id))  # None outside the user's pipelines
        if run is None or not self.has_view_permission(request, run):
            raise Http404("No such run.")
        try:
            report = report_rebuild(run=run, position=position)
        except ReportUnavailable as error:
            self.message_user(request, str(error), messages.ERROR)
            return redirect("admin:pipelines_run_change", run.pk)
        # The report carries the run's output (personal data): the download is on the record.
        audit_record(
            action="run.report_downloaded",
            object_type="run",
            object_id=run.pk,
            payload={"position": position, "pdf_sha256": report.sha256},
            workspace_id=run.audit_workspace_id,
            pipeline_id=run.pipeline_id,
            actor=request.user,
        )
        response = HttpResponse(report.pdf, content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-step-{position}-report.pdf"'
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        # The page shows the run's input and output (personal data): the viewing is on the record.
        run = getattr(response, "context_data", {}).get("original") if request.method == "GET" else None
        if run is not None and response.status_code == 200:
            audit_record(
                action="run.personal_data_viewed",
                object_type="run",
                object_id=run.pk,
                payload={"where": "admin run page", "fields": ["input", "output"]},
                workspace_id=run.audit_workspace_id,
                pipeline_id=run.pipeline_id,
                actor=request.user,
            )
        return response

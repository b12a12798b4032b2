"""Named, readable columns for the admin's lists of runs, releases and
deployments: status badges, the failure reason, linked pipelines and one
timestamp format (``governance.templatetags.keel.when``)."""

from django.contrib import admin
from django.template.defaultfilters import truncatechars
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from governance.templatetags.keel import when
from pipelines.admin.links import pipeline_link
from pipelines.models import Release, Run

TRIGGER_LABELS = {"api": "API", "admin": "Admin", "cli": "Command line", "schedule": "Schedule"}


def badge(state: str, label: str | None = None) -> str:
    return format_html('<span class="keel-badge keel-badge-{}">{}</span>', state, label or state.replace("_", " "))


@admin.display(description="Run", ordering="pk")
def run_number(run: Run) -> str:
    # The number and when it started, in one narrow column (the list fits 1,280 px).
    return format_html('#{}<br><small class="keel-when">{}</small>', run.pk, when(run.created_at))


@admin.display(description="Pipeline", ordering="pipeline__name")
def pipeline_column(obj) -> str:
    return pipeline_link(obj.pipeline)


@admin.display(description="Pipeline", ordering="pipeline__name")
def run_pipeline(run: Run) -> str:
    """The pipeline, and below it the release that ran, each linked."""
    if run.release_id is None:
        return pipeline_link(run.pipeline)
    release = format_html('<a href="{}">release #{}</a>', reverse("admin:pipelines_release_change",
                          args=[run.release_id]), run.release.number)  # fmt: skip
    return format_html("{}<br><small>{}</small>", pipeline_link(run.pipeline), release)


@admin.display(description="Status", ordering="status")
def run_status(run: Run) -> str:
    return badge(run.status, run.status.replace("_", " ").capitalize())


@admin.display(description="Trigger", ordering="trigger")
def run_trigger(run: Run) -> str:
    return TRIGGER_LABELS.get(run.trigger, run.trigger)


@admin.display(description="Failure reason")
def run_failure(run: Run) -> str:
    if not run.failure_reason:
        return ""
    return format_html('<span class="keel-failure" title="{}">{}</span>', run.failure_reason,
                       truncatechars(run.failure_reason, 90))  # fmt: skip


class TriggerFilter(admin.SimpleListFilter):
    """The trigger filter with names a person reads ("API", not "Api")."""

    title = "trigger"
    parameter_name = "trigger__exact"

    def lookups(self, request, model_admin):
        return list(TRIGGER_LABELS.items())

    def queryset(self, request, queryset):
        return queryset.filter(trigger=self.value()) if self.value() else queryset


@admin.display(description="Created", ordering="created_at")
def created_column(obj) -> str:
    return when(obj.created_at)


@admin.display(description="Updated", ordering="updated_at")
def updated_column(obj) -> str:
    return when(obj.updated_at)


@admin.display(description="Finished", ordering="finished_at")
def run_finished(run: Run) -> str:
    return when(run.finished_at) or "-"


@admin.display(description="Runs")
def release_runs(release: Release) -> str:
    url = f"{reverse('admin:pipelines_run_changelist')}?{urlencode({'release__id__exact': release.pk})}"
    return format_html('<a href="{}">Runs of this release</a>', url)

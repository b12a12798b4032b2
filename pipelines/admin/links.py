"""Links between a pipeline's admin page and the pages of what belongs to it
(runs, releases, deployments, review tasks and queue, metrics), both ways.

Lists are linked filtered to the pipeline (``?pipeline__id__exact=``, the
lookup Django's own related-field filter uses); each list still shows only
what the user may see, so a link never reveals anything by itself.
"""

from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from pipelines.models import Deployment, Pipeline, Release, Run


def _changelist(name: str, pipeline: Pipeline, lookup: str = "pipeline__id__exact") -> str:
    return f"{reverse(f'admin:{name}_changelist')}?{urlencode({lookup: pipeline.pk})}"


def pipeline_related_links(pipeline: Pipeline) -> str:
    """One line of links, each with its count where counting is cheap."""
    runs = Run.objects.filter(pipeline=pipeline)
    failed = runs.filter(status=Run.Status.FAILED).count()
    links = [
        (_changelist("pipelines_run", pipeline), f"Runs ({runs.count()})"),
        (
            f"{_changelist('pipelines_run', pipeline)}&{urlencode({'status__exact': Run.Status.FAILED})}",
            f"Failed runs ({failed})",
        ),
        (_changelist("pipelines_release", pipeline), f"Releases ({Release.objects.filter(pipeline=pipeline).count()})"),
        (
            _changelist("pipelines_deployment", pipeline),
            f"Deployments ({Deployment.objects.filter(pipeline=pipeline).count()})",
        ),
        (_changelist("reviews_reviewtask", pipeline), "Review tasks"),
        (f"{reverse('reviews-queue')}?{urlencode({'pipeline': pipeline.slug})}", "Review queue"),
        (reverse("reviews-metrics", args=[pipeline.slug]), "Metrics"),
    ]
    items = format_html_join("", '<li><a href="{}">{}</a></li>', links)
    return format_html('<ul class="keel-related">{}</ul>', items)


def pipeline_link(pipeline: Pipeline | None) -> str:
    """The pipeline's name, linked to its admin page."""
    if pipeline is None:
        return "-"
    return format_html('<a href="{}">{}</a>', reverse("admin:pipelines_pipeline_change", args=[pipeline.pk]), pipeline)

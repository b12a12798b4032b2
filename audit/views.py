"""The auditor's desk: the timeline, a run's whole story, exports, rights as
of a moment and the access review. Read-only, for users holding view_audit,
each seeing only the workspaces and pipelines they hold it on."""

import hashlib
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from audit.access import audit_scope_for
from audit.canonical import canonical_bytes
from audit.exports import (
    CONTENT_TYPES,
    FORMATS,
    AuditFilter,
    ExportError,
    audit_events_for,
    audit_export_start,
    export_chunks,
)
from audit.forms import PermissionsAtForm, TimelineFilterForm
from audit.models import AuditEvent
from audit.rights import rights_at
from audit.services import audit_record

PAGE_SIZE = 50


def _scope_or_403(request):
    scope = audit_scope_for(request.user)
    if scope.is_empty:
        raise PermissionDenied("You hold view_audit on no workspace or pipeline.")
    return scope


def _visible(scope):
    from governance.models import Workspace
    from pipelines.models import Pipeline

    if scope.everything:
        return Workspace.objects.order_by("name"), Pipeline.objects.order_by("slug")
    return (
        Workspace.objects.filter(pk__in=scope.workspace_ids).order_by("name"),
        Pipeline.objects.filter(pk__in=scope.pipeline_ids).order_by("slug"),
    )


def _filter_form(request, scope) -> TimelineFilterForm:
    workspaces, pipelines = _visible(scope)
    return TimelineFilterForm(request.GET or None, workspaces=workspaces, pipelines=pipelines)


@login_required
@require_GET
def timeline(request):
    scope = _scope_or_403(request)
    form = _filter_form(request, scope)
    events, older = [], None
    if form.is_bound and not form.is_valid():
        return render(request, "audit/timeline.html", {"form": form, "events": []}, status=400)
    audit_filter = form.audit_filter() if form.is_bound else AuditFilter()
    # Keyset pagination on seq, newest first: the page after `before` never
    # counts or skips rows, so it costs the same at any depth.
    queryset = audit_events_for(scope=scope, audit_filter=audit_filter).order_by("-seq")
    before = form.cleaned_data.get("before") if form.is_bound else None
    if before:
        queryset = queryset.filter(seq__lt=before)
    events = list(queryset[: PAGE_SIZE + 1])
    if len(events) > PAGE_SIZE:
        events = events[:PAGE_SIZE]
        older = urlencode({**request.GET.dict(), "before": events[-1].seq})
    query = urlencode({k: v for k, v in request.GET.items() if k != "before"})
    return render(request, "audit/timeline.html", {"form": form, "events": events, "older": older, "query": query})


def _run_for(request, run_id: int):
    from pipelines.models import Run

    scope = _scope_or_403(request)
    run = get_object_or_404(Run.objects.select_related("pipeline", "release", "actor"), pk=run_id)
    if not scope.allows(run.pipeline.workspace_id, run.pipeline_id):
        raise Http404("No such run.")  # the same answer as a run that does not exist
    return run


def _run_page(request, run, *, reveal: bool):
    events = AuditEvent.objects.filter(object_type="run", object_id=str(run.pk)).order_by("seq")
    steps = run.steps.order_by("position")
    context = {"run": run, "events": events, "steps": steps, "reveal": reveal}
    return render(request, "audit/run.html", context)


@login_required
@require_GET
def run_story(request, run_id: int):
    return _run_page(request, _run_for(request, run_id), reveal=False)


@login_required
@require_POST
def run_reveal(request, run_id: int):
    """Show a run's input and outputs: personal data, so the viewing itself is
    put on the record before the page is rendered."""
    run = _run_for(request, run_id)
    audit_record(
        action="run.personal_data_viewed",
        object_type="run",
        object_id=run.pk,
        payload={"where": "audit run page", "fields": ["input", "output", "steps.input", "steps.output"]},
        workspace_id=run.pipeline.workspace_id,
        pipeline_id=run.pipeline_id,
        actor=request.user,
    )
    return _run_page(request, run, reveal=True)


@login_required
@require_GET
def export(request):
    scope = _scope_or_403(request)
    fmt = request.GET.get("format", "jsonl")
    if fmt not in FORMATS:
        return HttpResponseBadRequest(f"format must be one of {', '.join(FORMATS)}.")
    form = _filter_form(request, scope)
    if form.is_bound and not form.is_valid():
        return render(request, "audit/timeline.html", {"form": form, "events": []}, status=400)
    audit_filter = form.audit_filter() if form.is_bound else AuditFilter()
    try:
        plan = audit_export_start(scope=scope, audit_filter=audit_filter, fmt=fmt, actor=request.user)
    except ExportError as error:
        return HttpResponseBadRequest(str(error))
    response = StreamingHttpResponse(export_chunks(plan, fmt), content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="keel-audit-{plan.export_event_seq}.{fmt}"'
    return response


@login_required
@require_GET
def permissions_at(request):
    scope = _scope_or_403(request)
    _, pipelines = _visible(scope)
    form = PermissionsAtForm(request.GET or None, pipelines=pipelines.select_related("workspace"))
    holdings = None
    if form.is_bound and form.is_valid():
        pipeline = form.cleaned_data["pipeline"]
        holdings = rights_at(
            at=form.cleaned_data["at"], objects=[("pipeline", pipeline.pk), ("workspace", pipeline.workspace_id)]
        )
    status = 400 if form.is_bound and not form.is_valid() else 200
    return render(request, "audit/permissions_at.html", {"form": form, "holdings": holdings}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def access_review(request, workspace_id: int):
    """The access review; a POST signs it off, recording exactly which list
    was reviewed (its SHA-256) by whom."""
    from audit.access import access_review_rows
    from governance.models import Workspace

    scope = _scope_or_403(request)
    workspace = get_object_or_404(Workspace, pk=workspace_id)
    if not (scope.everything or workspace.pk in scope.workspace_ids):
        raise Http404("No such workspace.")
    rows = access_review_rows(workspace)
    digest = hashlib.sha256(canonical_bytes(rows)).hexdigest()
    if request.method == "POST":
        audit_record(
            action="access_review.signed_off",
            object_type="workspace",
            object_id=workspace.pk,
            payload={"rows": len(rows), "rows_sha256": digest},
            workspace_id=workspace.pk,
            actor=request.user,
        )
        return redirect("audit-access-review", workspace_id=workspace.pk)
    sign_offs = AuditEvent.objects.filter(action="access_review.signed_off", object_type="workspace")
    last = sign_offs.filter(object_id=str(workspace.pk)).order_by("-seq").first()
    context = {"workspace": workspace, "rows": rows, "digest": digest, "last_sign_off": last}
    return render(request, "audit/access_review.html", context)

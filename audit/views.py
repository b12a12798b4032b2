"""The auditor's desk: the timeline, a run's whole story, exports, rights as
of a moment and the access review. Read-only, for users holding view_audit,
each seeing only the workspaces and pipelines they hold it on."""

import hashlib
import json
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from audit.access import (
    access_review_rows,
    actors_and_actions,
    audit_scope_for,
    visible_names,
    visible_workspaces_and_pipelines,
)
from audit.canonical import canonical_bytes
from audit.desk import event_rows
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
from audit.rights import SITE, right_in_words, right_words, rights_at
from audit.services import audit_record
from governance.models import Workspace
from pipelines.models import Run

PAGE_SIZE = 50


def _scope_or_403(request):
    scope = audit_scope_for(request.user)
    if scope.is_empty:
        raise PermissionDenied("You hold view_audit on no workspace or pipeline.")
    return scope


def _filter_form(request, scope) -> TimelineFilterForm:
    workspaces, pipelines = visible_workspaces_and_pipelines(scope)
    actors, actions = actors_and_actions(scope)
    return TimelineFilterForm(
        request.GET or None, workspaces=workspaces, pipelines=pipelines, actors=actors, actions=actions
    )


def _filter_error(request, form):
    return render(request, "audit/timeline.html", {"form": form, "rows": []}, status=400)


@login_required
@require_GET
def timeline(request):
    scope = _scope_or_403(request)
    form = _filter_form(request, scope)
    older = None
    if form.is_bound and not form.is_valid():
        return _filter_error(request, form)
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
    query = urlencode({k: v for k, v in request.GET.items() if k not in ("before", "format")})
    context = {"form": form, "rows": event_rows(events, scope), "events": events, "older": older, "query": query}
    return render(request, "audit/timeline.html", context)


def _run_for(request, run_id: int):
    scope = _scope_or_403(request)
    run = get_object_or_404(Run.objects.select_related("pipeline__workspace", "release", "actor"), pk=run_id)
    if not scope.allows(run.pipeline.workspace_id, run.pipeline_id):
        raise Http404("No such run.")  # the same answer as a run that does not exist
    return run


def _pretty(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _run_page(request, run, *, reveal: bool):
    scope = audit_scope_for(request.user)
    events = list(AuditEvent.objects.filter(object_type="run", object_id=str(run.pk)).order_by("seq"))
    steps = list(run.steps.order_by("position"))
    context = {"run": run, "rows": event_rows(events, scope), "events": events, "steps": steps, "reveal": reveal}
    if reveal:
        context["input_json"], context["output_json"] = _pretty(run.input), _pretty(run.output)
        context["step_json"] = [(step, _pretty(step.input), _pretty(step.output)) for step in steps]
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
        return _filter_error(request, form)
    audit_filter = form.audit_filter() if form.is_bound else AuditFilter()
    names = visible_names(scope) if fmt == "pdf" else None  # the report names what it shows
    try:
        plan = audit_export_start(scope=scope, audit_filter=audit_filter, fmt=fmt, actor=request.user, names=names)
    except ExportError as error:
        return HttpResponseBadRequest(str(error))
    response = StreamingHttpResponse(export_chunks(plan, fmt), content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="keel-audit-{plan.export_event_seq}.{fmt}"'
    return response


@login_required
@require_GET
def permissions_at(request):
    scope = _scope_or_403(request)
    _, pipelines = visible_workspaces_and_pipelines(scope)
    form = PermissionsAtForm(request.GET or None, pipelines=pipelines)
    holdings = rows = None
    if form.is_bound and form.is_valid():
        pipeline = form.cleaned_data["pipeline"]
        names = {
            f"pipeline:{pipeline.pk}": pipeline.name,
            f"workspace:{pipeline.workspace_id}": pipeline.workspace.name,
        }
        holdings = rights_at(
            at=form.cleaned_data["at"], objects=[("pipeline", pipeline.pk), ("workspace", pipeline.workspace_id)]
        )
        # Staff status alone gives no right here: only the staff who hold one are listed,
        # so the page names nobody from a workspace the reader cannot see.
        here = {holding.user_id for holding in holdings if holding.on != SITE}
        shown = [h for h in holdings if h.on != SITE or h.right == "superuser" or h.user_id in here]
        rows = sorted(((h, right_in_words(h.right, h.on, names)) for h in shown), key=lambda r: (r[0].user, r[1]))
    status = 400 if form.is_bound and not form.is_valid() else 200
    return render(
        request, "audit/permissions_at.html", {"form": form, "holdings": holdings, "rows": rows}, status=status
    )


@login_required
@require_http_methods(["GET", "POST"])
def access_review(request, workspace_id: int):
    """The access review; a POST signs it off, recording exactly which list
    was reviewed (its SHA-256) by whom."""
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
    # The rows are hashed as they are (codenames); the page puts each in words beside them.
    words = [right_words(row["right"], *row["on"].split(" ", 1)) for row in rows]
    described = list(zip(rows, words, strict=True))
    context = {"workspace": workspace, "rows": rows, "described": described, "digest": digest, "last_sign_off": last}
    return render(request, "audit/access_review.html", context)

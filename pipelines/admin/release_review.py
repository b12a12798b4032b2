"""The approver's page of a release: what it changes against production (the
history's coloured diff), its evaluation and gate, its transitions, and
approve / reject on the page itself.

Before anyone clicks, the page says whether the signed-in user may approve
and, if not, why (the rules ``release_approve`` enforces: the approve right,
not its author, not an editor of its configuration, one approval each) and
who may. The decision itself goes through ``release_approve`` /
``release_reject``, which check everything again; a refusal they give is
shown on the page.
"""

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from guardian.shortcuts import get_users_with_perms

from governance.models import change_policy_for
from governance.permissions import user_can
from pipelines.models import Deployment, EvaluationResult, Release
from pipelines.releases.approval import (
    release_approve,
    release_approvers,
    release_editors,
    release_reject,
    release_state,
)
from pipelines.releases.base import State
from pipelines.releases.diff import release_diff
from pipelines.releases.gate import evaluation_latest, release_gate_problems


class ApproveForm(forms.Form):
    note = forms.CharField(required=False, max_length=1000, widget=forms.Textarea(attrs={"rows": 2}))


class RejectForm(forms.Form):
    reason = forms.CharField(
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": "Say why the release is rejected."},
    )

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError("Say why the release is rejected.")
        return reason


def approval_refusal(release: Release, user, *, approvers: list, editors: set[int]) -> str | None:
    """Why ``user`` may not approve ``release`` now (the rules of
    ``release_approve``, in its order), or None when they may."""
    if not user_can(user, "approve_release", release.pipeline):
        return "approving needs the approve right on this pipeline or its workspace, which you do not hold."
    if user.pk == release.created_by_id:
        return "you cut this release (you are its author); someone else must approve it."
    if user.pk in editors:
        return "you edited its configuration since the previous release (separation of duties); ask someone else."
    if user.pk in {u.pk for u in approvers}:
        return "you have already approved it; the remaining approvals must come from other people."
    return None


def eligible_approvers(release: Release, *, approvers: list, editors: set[int]) -> list[str]:
    """Usernames of the active people who may still approve: the approve
    right on the pipeline or its workspace (directly or through a group),
    or superuser status; never an author, editor or earlier approver."""
    pipeline = release.pipeline
    holders = set()
    for target in (pipeline, pipeline.workspace):
        holders |= set(get_users_with_perms(target, only_with_perms_in=["approve_release"], with_group_users=True))
    holders |= set(get_user_model().objects.filter(is_superuser=True))
    excluded = editors | {u.pk for u in approvers} | {release.created_by_id}
    return sorted(u.get_username() for u in holders if u.is_active and u.pk not in excluded)


def submitted_notes(release: Release) -> str:
    """What the release changes and why: its own notes, else what its
    submitter wrote (the newest submission's reason)."""
    if release.notes.strip():
        return release.notes
    submitted = release.transitions.filter(state=State.SUBMITTED).order_by("-pk").first()
    return submitted.reason if submitted else ""


def release_review_view(modeladmin, request, object_id):
    """Show the release to its approvers; on POST approve or reject it."""
    release = get_object_or_404(
        modeladmin.get_queryset(request).select_related("pipeline__workspace", "created_by"), pk=object_id
    )
    forms_ = {"approve": ApproveForm(prefix="approve"), "reject": RejectForm(prefix="reject")}
    if request.method == "POST":
        decision = request.POST.get("decision")
        if decision not in forms_:
            modeladmin.message_user(request, "Choose approve or reject.", messages.ERROR)
        else:
            form = forms_[decision] = type(forms_[decision])(request.POST, prefix=decision)
            if form.is_valid() and _decided(modeladmin, request, release, decision, form.cleaned_data):
                return HttpResponseRedirect(request.path)
    context = _context(modeladmin, request, release, forms_["approve"], forms_["reject"])
    return TemplateResponse(request, "admin/keel/release_review.html", context)


def _decided(modeladmin, request, release: Release, decision: str, data: dict) -> bool:
    """Call the decision's service; say what happened, or why it was refused."""
    try:
        if decision == "approve":
            transition = release_approve(release=release, actor=request.user, note=data["note"])
        else:
            transition = release_reject(release=release, actor=request.user, reason=data["reason"])
    except (PermissionDenied, ValidationError) as error:
        text = "; ".join(error.messages) if isinstance(error, ValidationError) else str(error)
        modeladmin.message_user(request, f"Refused: {text}", messages.ERROR)
        return False
    outcomes = {
        State.APPROVAL: "Your approval is recorded; the release needs more approvals.",
        State.APPROVED: "Your approval is recorded: the release is approved.",
        State.REJECTED: "The release is rejected.",
    }
    modeladmin.message_user(request, outcomes.get(transition.state, f"Recorded: {transition.state}."))
    return True


def _context(modeladmin, request, release: Release, approve_form, reject_form) -> dict:
    pipeline = release.pipeline
    live = Deployment.objects.filter(pipeline=pipeline, environment="production").select_related("release").first()
    base = live.release if live and live.release_id else None
    evaluation = evaluation_latest(release)
    results = evaluation.results.select_related("case") if evaluation else EvaluationResult.objects.none()
    state = release_state(release)
    approvers = release_approvers(release)
    waiting = state == State.SUBMITTED
    editors = release_editors(release) if waiting else set()
    return {
        **modeladmin.admin_site.each_context(request),
        "title": f"Review {release}",
        "opts": modeladmin.model._meta,
        "release": release,
        "state": state,
        "notes": submitted_notes(release),
        "approvers": approvers,
        "policy": change_policy_for(pipeline),
        "problems": release_gate_problems(release),
        "base": base,
        "diff": release_diff(base.snapshot_data if base else None, release.snapshot_data),
        "evaluation": evaluation,
        "results": results,
        "transitions": release.transitions.select_related("actor").order_by("pk"),
        "may_decide": user_can(request.user, "approve_release", pipeline),
        "refusal": approval_refusal(release, request.user, approvers=approvers, editors=editors),
        "eligible": eligible_approvers(release, approvers=approvers, editors=editors)
        if state == State.SUBMITTED
        else [],
        "approve_form": approve_form,
        "reject_form": reject_form,
    }

"""Review tasks and decisions in the admin: read-only records of who was asked
to decide what, and what they decided. Deciding happens in the reviewer app
(/review/); here governance leads, auditors and operators look back, each only
at the pipelines they hold a right on."""

from django.contrib import admin

from audit.services import audit_record
from governance.admin_base import GovernedModelAdmin
from pipelines.admin.releases import ReadOnlyMixin
from reviews.models import ReviewDecision, ReviewTask


class ReviewDecisionInline(admin.TabularInline):
    model = ReviewDecision
    extra = 0
    can_delete = False
    fields = ("reviewer", "decision", "reason", "category", "created_at")
    readonly_fields = fields
    ordering = ("created_at", "pk")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ReviewTask)
class ReviewTaskAdmin(ReadOnlyMixin, GovernedModelAdmin):
    list_display = ("pk", "run", "pipeline", "kind", "status", "reasons", "required_approvals", "deadline_at",
                    "escalation_level", "claimed_by", "created_at", "decided_at")  # fmt: skip
    list_filter = ("status", "kind", "escalation_level")  # no pipeline filter: it would name other clients' pipelines
    list_select_related = ("run", "run__pipeline", "pipeline", "claimed_by")
    search_fields = ("=pk", "=run__pk")
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = ("run", "pipeline", "position", "kind", "status", "reasons", "rule_hits", "confidence",
              "required_approvals", "deadline_at", "second_deadline_at", "claimed_by", "claim_expires_at",
              "escalation_level", "escalated_at", "sample_seed", "created_at", "decided_at")  # fmt: skip
    readonly_fields = fields
    inlines = [ReviewDecisionInline]

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


@admin.register(ReviewDecision)
class ReviewDecisionAdmin(ReadOnlyMixin, GovernedModelAdmin):
    list_display = ("pk", "task", "pipeline", "reviewer", "decision", "category", "created_at")
    list_filter = ("decision",)
    list_select_related = ("task", "task__pipeline", "reviewer")
    search_fields = ("=task__pk", "=task__run__pk", "reviewer__username")
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = ("task", "reviewer", "decision", "reason", "category", "diff", "original_output", "edited_output",
              "created_at")  # fmt: skip
    readonly_fields = fields

    @admin.display(description="pipeline")
    def pipeline(self, obj):
        return obj.task.pipeline

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        # An edit shows the output before and after (personal data): the viewing is on the record, as for a run.
        decision = getattr(response, "context_data", {}).get("original") if request.method == "GET" else None
        if decision is not None and response.status_code == 200 and decision.edited_output is not None:
            audit_record(
                action="run.personal_data_viewed",
                object_type="run",
                object_id=decision.task.run_id,
                payload={"where": "admin review decision page", "decision": decision.pk,
                         "fields": ["original_output", "edited_output"]},
                workspace_id=decision.task.pipeline.workspace_id,
                pipeline_id=decision.task.pipeline_id,
                actor=request.user,
            )  # fmt: skip
        return response

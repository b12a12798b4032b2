"""The integration surface in the admin: service tokens (shown once, revoked,
never edited), dead-letter deliveries, schedules and budgets."""

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from governance.accounts import acting_as_check, service_accounts_governed_by, workspaces_governed_by
from governance.admin_base import GovernedModelAdmin
from governance.permissions import (
    can_manage_permissions,
    filter_for_user,
    is_governance_lead,
    user_can,
    workspaces_for_user,
)
from pipelines.admin.releases import ReadOnlyMixin
from pipelines.delivery.dead_letters import dead_letter_resend, dead_letters_for_user
from pipelines.integration.schedules import schedule_delete, schedule_input_check, schedule_save
from pipelines.integration.tokens import token_create, token_revoke
from pipelines.models import Budget, DeadLetter, Document, Pipeline, PipelineSchedule, ServiceToken
from pipelines.runs.budgets import (
    budget_can_manage,
    budget_delete,
    budget_save,
    budget_spend,
    month_start,
    spend_by_pipeline_model_month,
)


def _tokens_visible_to(user, queryset):
    """A person's own tokens, and the tokens of the workspaces they govern
    (superusers: every token)."""
    if user.is_superuser:
        return queryset
    governed = workspaces_governed_by(user)
    return queryset.filter(Q(user=user) | Q(workspace__in=governed) | Q(pipeline__workspace__in=governed))


def _token_users_for(user):
    """Whom a token created by ``user`` may act as: themself, or a service
    account of a workspace they govern (``acting_as_check``)."""
    accounts = service_accounts_governed_by(user).filter(user__is_active=True).values("user_id")
    return get_user_model().objects.filter(Q(pk=user.pk) | Q(pk__in=accounts)).order_by("username")


class ServiceTokenForm(forms.ModelForm):
    class Meta:
        model = ServiceToken
        fields = ["name", "user", "workspace", "pipeline"]
        help_texts = {
            "user": "The account the token acts as: it holds this user's rights, and only within its scope.",
            "workspace": "Scope: every pipeline of this workspace…",
            "pipeline": "…or this one pipeline.",
        }

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request
        if "user" not in self.fields:
            return  # an existing token: every field is read-only
        if request is None:
            self.fields["user"].queryset = get_user_model().objects.none()
            return
        self.fields["user"].queryset = _token_users_for(request.user)
        governed = workspaces_governed_by(request.user)
        self.fields["workspace"].queryset = governed
        self.fields["pipeline"].queryset = Pipeline.objects.filter(workspace__in=governed)

    def clean(self):
        cleaned = super().clean()
        scope = cleaned.get("pipeline") or cleaned.get("workspace")
        if cleaned.get("pipeline") and cleaned.get("workspace"):
            raise ValidationError("Choose a workspace or a pipeline, not both.")
        if scope is None:
            raise ValidationError("Choose the token's scope: a workspace or a pipeline.")
        if self.request is None:
            raise ValidationError("A token is created by a signed-in person.")
        if not can_manage_permissions(self.request.user, scope):
            raise ValidationError(
                f"You may not hand out access to {scope}: that needs the right to manage its permissions."
            )
        if cleaned.get("user") is not None:
            workspace = scope.workspace if isinstance(scope, Pipeline) else scope
            acting_as_check(actor=self.request.user, user=cleaned["user"], workspace=workspace)
        return cleaned


@admin.action(description="Revoke the selected tokens")
def revoke_tokens(modeladmin, request, queryset):
    revoked = 0
    for token in queryset.select_related("user", "pipeline", "workspace"):
        try:
            token_revoke(token=token, actor=request.user)
            revoked += 1
        except (PermissionDenied, ValidationError) as exc:
            modeladmin.message_user(
                request, f"{token}: {' '.join(getattr(exc, 'messages', [str(exc)]))}", messages.ERROR
            )
    if revoked:
        modeladmin.message_user(request, f"Revoked {revoked} token(s); requests with them are refused from now on.")


@admin.register(ServiceToken)
class ServiceTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "user", "workspace", "pipeline", "created_by", "created_at", "last_used_at",
                    "revoked_at")  # fmt: skip
    list_select_related = ("user", "workspace", "pipeline", "created_by")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "user__username")
    actions = [revoke_tokens]
    form = ServiceTokenForm
    readonly_fields = ("prefix", "created_at", "created_by", "last_used_at", "revoked_at", "revoked_by")

    def get_queryset(self, request):
        return _tokens_visible_to(request.user, super().get_queryset(request))

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)

        class RequestForm(form):
            def __init__(self, *args, **inner):
                super().__init__(*args, request=request, **inner)

        return RequestForm

    def get_fields(self, request, obj=None):
        return ["name", "user", "workspace", "pipeline"] if obj is None else [
            "name", "user", "workspace", "pipeline", *self.readonly_fields
        ]  # fmt: skip

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("name", "user", "workspace", "pipeline", *self.readonly_fields)

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff and is_governance_lead(request.user)

    def has_view_permission(self, request, obj=None):
        if not self.has_module_permission(request):
            return False
        return obj is None or _tokens_visible_to(request.user, ServiceToken.objects.filter(pk=obj.pk)).exists()

    def has_add_permission(self, request):
        return self.has_module_permission(request)

    def has_change_permission(self, request, obj=None):
        return False  # a token is created and revoked, never edited

    def has_delete_permission(self, request, obj=None):
        return False  # revoked tokens stay, so the audit trail keeps naming something

    def get_actions(self, request):
        # The revoke action is offered to those who may see the list; each token is checked by token_revoke.
        actions = super().get_actions(request)
        if self.has_module_permission(request) and "revoke_tokens" not in actions:
            actions["revoke_tokens"] = self.get_action("revoke_tokens")
        return actions

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        token, plain = token_create(
            user=data["user"], name=data["name"], pipeline=data.get("pipeline"), workspace=data.get("workspace"),
            actor=request.user,
        )  # fmt: skip
        form.instance = token
        obj.pk = token.pk
        request._keel_token_plain = plain

    def response_add(self, request, obj, post_url_continue=None):
        # The token is shown on this page and nowhere else: not in a message
        # (kept in a cookie or the session), not in a redirect.
        context = {**self.admin_site.each_context(request), "title": "Token created", "opts": self.opts,
                   "token": obj, "plain": request._keel_token_plain}  # fmt: skip
        return TemplateResponse(request, "admin/keel/token_created.html", context)

    def save_related(self, request, form, formsets, change):
        pass  # nothing related; the token row was written by token_create


@admin.action(description="Resend the selected deliveries (same delivery ids)")
def resend_deliveries(modeladmin, request, queryset):
    queued = 0
    for delivery in queryset:
        try:
            dead_letter_resend(delivery=delivery, actor=request.user)
            queued += 1
        except (PermissionDenied, ValidationError) as exc:
            reason = " ".join(getattr(exc, "messages", [str(exc)]))
            modeladmin.message_user(request, f"{delivery.delivery_id}: {reason}", messages.ERROR)
    if queued:
        modeladmin.message_user(request, f"Queued {queued} delivery(ies) to be sent again under their delivery ids.")


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyMixin, GovernedModelAdmin):
    list_display = ("delivery_id", "run", "pipeline", "position", "event", "status", "attempts", "last_status_code",
                    "last_error", "created_at")  # fmt: skip
    list_select_related = ("run", "run__pipeline")
    search_fields = ("=delivery_id", "=run__pk", "last_error")
    readonly_fields = ("delivery_id", "run", "position", "event", "channel", "url", "status", "attempts",
                       "last_status_code", "last_error", "receiver", "payload_sha256", "created_at",
                       "delivered_at")  # fmt: skip
    actions = [resend_deliveries]
    action_rights = {"resend_deliveries": ("deploy_pipeline",)}

    def get_queryset(self, request):
        return dead_letters_for_user(user=request.user)

    @admin.display(description="pipeline")
    def pipeline(self, obj):
        return obj.run.pipeline

    # Seeing dead letters is seeing deliveries: the role's delivery permission and
    # a right on the pipeline. Resending is an action its service checks (deploy right).
    def has_view_permission(self, request, obj=None):
        if not request.user.has_perm("pipelines.view_delivery"):
            return False
        return obj is None or user_can(request.user, "view", obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


class PipelineScheduleForm(forms.ModelForm):
    class Meta:
        model = PipelineSchedule
        fields = ["pipeline", "name", "cron", "timezone", "input", "enabled"]

    def _post_clean(self):
        super()._post_clean()  # the model's clean: cron expression and time zone
        if self.instance.pipeline_id and "input" not in self.errors:
            try:
                schedule_input_check(self.instance)
            except ValidationError as exc:
                self._update_errors(exc)


@admin.register(PipelineSchedule)
class PipelineScheduleAdmin(GovernedModelAdmin):
    form = PipelineScheduleForm
    list_display = ("name", "pipeline", "cron", "timezone", "enabled", "last_run_at", "updated_at")
    list_select_related = ("pipeline", "periodic_task")
    list_filter = ("enabled",)
    search_fields = ("name", "pipeline__slug")
    fields = ("pipeline", "name", "cron", "timezone", "input", "enabled")

    @admin.display(description="last fired")
    def last_run_at(self, obj):
        return obj.periodic_task.last_run_at if obj.periodic_task else None

    # A schedule is part of its pipeline's configuration: the pipeline's model
    # permissions (the role) and object rights (where) decide.
    def _pipeline_perm(self, request, action: str) -> bool:
        return request.user.has_perm(f"pipelines.{action}_pipeline")

    def has_view_permission(self, request, obj=None):
        if not (self._pipeline_perm(request, "view") or self._pipeline_perm(request, "change")):
            return False
        return obj is None or user_can(request.user, "view", obj)

    def has_change_permission(self, request, obj=None):
        return self._pipeline_perm(request, "change") and (obj is None or user_can(request.user, "change", obj))

    def has_add_permission(self, request, *args):
        return self._pipeline_perm(request, "change") and workspaces_for_user(request.user, "change").exists()

    def has_delete_permission(self, request, obj=None):
        return self.has_change_permission(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "pipeline":
            kwargs["queryset"] = filter_for_user(request.user, "change", Pipeline.objects.all())
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        schedule_save(schedule=obj, actor=request.user)

    def delete_model(self, request, obj):
        schedule_delete(schedule=obj, actor=request.user)

    @transaction.atomic
    def delete_queryset(self, request, queryset):
        for schedule in queryset:
            schedule_delete(schedule=schedule, actor=request.user)


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ("__str__", "unit", "spend_this_month", "soft_limit", "hard_limit", "on_hard_limit", "updated_at")
    list_select_related = ("workspace", "pipeline")
    fields = ("workspace", "pipeline", "unit", "soft_limit", "hard_limit", "on_hard_limit", "spend_report")
    readonly_fields = ("spend_report",)

    def get_queryset(self, request):
        pipelines = filter_for_user(request.user, "view", Pipeline.objects.all())
        workspaces = workspaces_for_user(request.user, "view", inside=False)
        queryset = super().get_queryset(request)
        return queryset.filter(pipeline__in=pipelines) | queryset.filter(workspace__in=workspaces)

    @admin.display(description="spent this month")
    def spend_this_month(self, obj):
        return budget_spend(budget=obj)

    @admin.display(description="spend by pipeline, model and month (last 6 months)")
    def spend_report(self, obj):
        if obj is None or obj.pk is None:
            return "—"
        since = month_start(timezone.now() - timedelta(days=155))
        rows = spend_by_pipeline_model_month(budget=obj, since=since)
        if not rows:
            return "Nothing spent yet."
        return format_html(
            "<table><tr><th>month</th><th>pipeline</th><th>model</th><th>tokens</th><th>cost</th></tr>{}</table>",
            format_html_join(
                "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                ((r["month"], r["pipeline"], r["model"], r["tokens"], r["cost"]) for r in rows),
            ),
        )  # fmt: skip

    # Budgets are read by whoever may see their scope and set by its governance leads.
    def has_module_permission(self, request):
        return (
            request.user.is_active
            and request.user.is_staff
            and (request.user.has_perm("pipelines.view_pipeline") or is_governance_lead(request.user))
        )

    def has_view_permission(self, request, obj=None):
        if not self.has_module_permission(request):
            return False
        return obj is None or user_can(request.user, "view", obj.scope)

    def has_change_permission(self, request, obj=None):
        if not is_governance_lead(request.user):
            return False
        return obj is None or budget_can_manage(request.user, obj)

    def has_add_permission(self, request):
        return is_governance_lead(request.user)

    def has_delete_permission(self, request, obj=None):
        return self.has_change_permission(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "workspace":
            kwargs["queryset"] = workspaces_for_user(request.user, "change")
        elif db_field.name == "pipeline":
            kwargs["queryset"] = filter_for_user(request.user, "change", Pipeline.objects.all())
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        budget_save(budget=obj, actor=request.user)

    def delete_model(self, request, obj):
        budget_delete(budget=obj, actor=request.user)

    @transaction.atomic
    def delete_queryset(self, request, queryset):
        for budget in queryset:
            budget_delete(budget=budget, actor=request.user)


@admin.register(Document)
class DocumentAdmin(ReadOnlyMixin, GovernedModelAdmin):
    """Uploaded documents, read-only: what a sender actually sent, beside the run it started."""

    list_display = ("__str__", "run", "pipeline", "content_type", "size", "source", "sha256", "created_at")
    list_select_related = ("run", "pipeline")
    search_fields = ("=sha256", "filename", "source", "=run__pk")
    fields = ("run", "pipeline", "filename", "content_type", "size", "pages", "sha256", "source", "created_by",
              "created_at")  # fmt: skip
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer("content", "text")  # the list never loads the bytes or text

    # Documents are run input: whoever may see the pipeline's runs may see them.
    def has_view_permission(self, request, obj=None):
        if not request.user.has_perm("pipelines.view_run"):
            return False
        return obj is None or user_can(request.user, "view", obj)

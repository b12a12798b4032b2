from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.template.response import TemplateResponse

from governance.admin_base import FORMFIELD_OVERRIDES, WORKSPACE_FILTER, GovernedModelAdmin, GovernedStackedInline
from governance.models import Credential
from governance.permissions import filter_for_user, user_can
from pipelines.admin.columns import updated_column
from pipelines.admin.links import pipeline_related_links
from pipelines.admin.release_control import pause_pipelines, unpause_pipelines
from pipelines.admin.releases import cut_release
from pipelines.models import ModelConfig, Pipeline, PromptTemplate, Step
from pipelines.releases.config import config_owner_transfer


class OwnerTransferForm(forms.Form):
    new_owner = forms.ModelChoiceField(queryset=get_user_model().objects.filter(is_active=True).order_by("username"))
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), max_length=1000)


@admin.action(description="Transfer ownership")
def transfer_ownership(modeladmin, request, queryset):
    """Ask for the new owner and a reason on an intermediate page, then move
    every selected object at once. All or nothing: one object the user may not
    change refuses the whole batch."""
    refused = [obj for obj in queryset if not user_can(request.user, "change", obj)]
    if refused:
        names = ", ".join(str(obj) for obj in refused)
        modeladmin.message_user(request, f"You may not change {names}; nothing was transferred.", messages.ERROR)
        return None
    form = OwnerTransferForm(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        try:
            count = config_owner_transfer(
                queryset=queryset,
                new_owner=form.cleaned_data["new_owner"],
                actor=request.user,
                reason=form.cleaned_data["reason"],
            )
        except (PermissionDenied, ValidationError) as exc:
            modeladmin.message_user(request, " ".join(getattr(exc, "messages", [str(exc)])), messages.ERROR)
            return None
        modeladmin.message_user(request, f"Transferred {count} of {len(queryset)} to {form.cleaned_data['new_owner']}.")
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Transfer ownership",
        "subtitle": None,
        "opts": modeladmin.opts,
        "queryset": queryset.select_related("owner"),
        "form": form,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    request.current_app = modeladmin.admin_site.name
    return TemplateResponse(request, "admin/keel/owner_transfer.html", context)


class StepInline(GovernedStackedInline):
    # Stacked, not a table: a step's JSON config needs the page's width (readable at 1,280 px).
    model = Step
    extra = 0
    fields = (("position", "name", "kind"), ("prompt", "model_config"), "config")
    ordering = ("position",)


@admin.register(Pipeline)
class PipelineAdmin(GovernedModelAdmin):
    list_display = ("name", "slug", "workspace", "owner", "approval_policy", updated_column)
    list_filter = (WORKSPACE_FILTER,)
    list_select_related = ("workspace", "owner", "approval_policy")
    search_fields = ("name", "slug", "description")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [StepInline]
    actions = [transfer_ownership, cut_release, pause_pipelines, unpause_pipelines]
    action_rights = {"pause_pipelines": ("deploy_pipeline",), "unpause_pipelines": ("deploy_pipeline",)}
    readonly_fields = ("related",)
    fieldsets = [
        (None, {"fields": ("workspace", "name", "slug", "description", "related", "input_schema", "title_field")}),
        ("Ownership", {"fields": ("owner", "team", "escalation_contact", "runbook")}),
        ("Review", {"fields": ("approval_policy",)}),
    ]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:  # nothing belongs to a pipeline not yet saved
            fieldsets = [(n, {**o, "fields": [f for f in o["fields"] if f != "related"]}) for n, o in fieldsets]
        return fieldsets

    @admin.display(description="Runs and releases")
    def related(self, obj: Pipeline) -> str:
        return pipeline_related_links(obj) if obj.pk else "-"


@admin.register(PromptTemplate)
class PromptTemplateAdmin(GovernedModelAdmin):
    # A prompt is kept exactly as typed (trailing newlines too), so a save that changes nothing is no new version.
    formfield_overrides = {**FORMFIELD_OVERRIDES, models.TextField: {"strip": False}}
    list_display = ("name", "slug", "workspace", "owner", updated_column)
    list_filter = (WORKSPACE_FILTER,)
    list_select_related = ("workspace", "owner")
    search_fields = ("name", "slug", "body")
    actions = [transfer_ownership]
    prepopulated_fields = {"slug": ("name",)}


@admin.register(ModelConfig)
class ModelConfigAdmin(GovernedModelAdmin):
    list_display = ("name", "slug", "workspace", "provider", "model_name", "model_version")
    list_filter = (WORKSPACE_FILTER, "provider")
    list_select_related = ("workspace",)
    search_fields = ("name", "slug", "model_name")
    prepopulated_fields = {"slug": ("name",)}

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        # A credential of a workspace the user works in; the model's clean() holds it to the config's own.
        if db_field.name == "credential":
            kwargs["queryset"] = filter_for_user(request.user, "view", Credential.objects.select_related("workspace"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

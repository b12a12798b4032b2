from django.contrib import admin

from governance.admin_base import GovernedInline, GovernedModelAdmin
from pipelines.models import ModelConfig, Pipeline, PromptTemplate, Step


class StepInline(GovernedInline):
    model = Step
    extra = 0
    fields = ("position", "name", "kind", "config", "prompt", "model_config")
    ordering = ("position",)


@admin.register(Pipeline)
class PipelineAdmin(GovernedModelAdmin):
    list_display = ("name", "slug", "workspace", "owner", "approval_policy", "updated_at")
    list_filter = ("workspace",)
    list_select_related = ("workspace", "owner", "approval_policy")
    search_fields = ("name", "slug", "description")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [StepInline]
    fieldsets = [
        (None, {"fields": ("workspace", "name", "slug", "description", "input_schema")}),
        ("Ownership", {"fields": ("owner", "team", "escalation_contact", "runbook")}),
        ("Review", {"fields": ("approval_policy",)}),
    ]


@admin.register(PromptTemplate)
class PromptTemplateAdmin(GovernedModelAdmin):
    list_display = ("name", "slug", "workspace", "owner", "updated_at")
    list_filter = ("workspace",)
    list_select_related = ("workspace", "owner")
    search_fields = ("name", "slug", "body")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(ModelConfig)
class ModelConfigAdmin(GovernedModelAdmin):
    list_display = ("name", "slug", "workspace", "provider", "model_name", "model_version")
    list_filter = ("workspace", "provider")
    list_select_related = ("workspace",)
    search_fields = ("name", "slug", "model_name")
    prepopulated_fields = {"slug": ("name",)}

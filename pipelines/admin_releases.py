"""Releases and deployments in the admin: releases are read-only snapshots;
cutting, deploying and rolling back are actions that call their services."""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.template.response import TemplateResponse
from django.utils.html import format_html

from governance.admin_base import GovernedModelAdmin
from pipelines.models import Deployment, Release
from pipelines.services import deployment_rollback, deployment_set, release_cut


def _refusal(error: Exception) -> str:
    return "; ".join(error.messages) if isinstance(error, ValidationError) else str(error)


@admin.action(description="Cut a release of the selected pipelines")
def cut_release(modeladmin, request, queryset):
    for pipeline in queryset:
        try:
            release = release_cut(pipeline=pipeline, actor=request.user)
        except (ValidationError, PermissionDenied) as error:
            modeladmin.message_user(request, f"{pipeline}: {_refusal(error)}", messages.ERROR)
        else:
            modeladmin.message_user(
                request, f"{pipeline}: cut release #{release.number} ({release.short_fingerprint})."
            )


def _deploy(modeladmin, request, queryset, environment: str) -> None:
    for release in queryset.select_related("pipeline"):
        try:
            deployment_set(release=release, environment=environment, actor=request.user)
        except (ValidationError, PermissionDenied) as error:
            modeladmin.message_user(request, f"{release}: {_refusal(error)}", messages.ERROR)
        else:
            modeladmin.message_user(request, f"{release} is live in {environment}.")


@admin.action(description="Deploy to staging")
def deploy_staging(modeladmin, request, queryset):
    _deploy(modeladmin, request, queryset, Deployment.Environment.STAGING)


@admin.action(description="Deploy to production")
def deploy_production(modeladmin, request, queryset):
    _deploy(modeladmin, request, queryset, Deployment.Environment.PRODUCTION)


class RollbackForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Recorded in the audit trail.")


@admin.action(description="Roll back to the previously live release")
def roll_back(modeladmin, request, queryset):
    form = RollbackForm(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        for deployment in queryset.select_related("pipeline"):
            try:
                deployment_rollback(
                    pipeline=deployment.pipeline,
                    environment=deployment.environment,
                    actor=request.user,
                    reason=form.cleaned_data["reason"],
                )
            except (ValidationError, PermissionDenied) as error:
                modeladmin.message_user(request, f"{deployment}: {_refusal(error)}", messages.ERROR)
            else:
                modeladmin.message_user(request, f"Rolled back: {Deployment.objects.get(pk=deployment.pk)}.")
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Roll back deployments",
        "form": form,
        "queryset": queryset,
        "opts": modeladmin.model._meta,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/keel/rollback.html", context)


class ReadOnlyMixin:
    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Release)
class ReleaseAdmin(ReadOnlyMixin, GovernedModelAdmin):
    list_display = ("__str__", "pipeline", "number", "short_fingerprint", "created_by", "created_at")
    list_filter = ("pipeline",)
    list_select_related = ("pipeline", "created_by")
    search_fields = ("pipeline__slug", "fingerprint", "notes")
    readonly_fields = ("pipeline", "number", "fingerprint", "keel_version", "notes", "created_by", "created_at")
    fields = (*readonly_fields, "snapshot_pretty")
    actions = [deploy_staging, deploy_production]

    def get_list_filter(self, request):
        return ()  # a pipeline filter would name pipelines of other clients

    def get_actions(self, request):
        # Actions need no model permission here: the services check the
        # deploy right on each release's pipeline.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description="snapshot")
    def snapshot_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.snapshot_data, indent=2, ensure_ascii=False))


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyMixin, GovernedModelAdmin):
    list_display = ("pipeline", "environment", "release", "canary_release", "canary_share", "paused", "updated_at")
    list_select_related = ("pipeline", "release", "canary_release")
    list_filter = ("environment", "paused")
    readonly_fields = ("pipeline", "environment", "release", "canary_release", "canary_share", "paused", "updated_at")
    actions = [roll_back]

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

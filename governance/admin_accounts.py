"""Service accounts in the admin: a governance lead creates and lists the
accounts of the workspaces they lead. Never edited or deleted here; rights
are granted on the workspace's or pipeline's permissions page like anyone's."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError

from governance.accounts import (
    service_account_create,
    service_account_username_clean,
    service_accounts_governed_by,
    workspaces_governed_by,
)
from governance.models import ServiceAccount, Workspace


class ServiceAccountForm(forms.ModelForm):
    username = forms.CharField(max_length=150, help_text="The account's user name, e.g. billing-system.")

    class Meta:
        model = ServiceAccount
        fields = ["workspace", "username", "description"]

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request
        if "workspace" in self.fields:
            governed = workspaces_governed_by(request.user) if request is not None else Workspace.objects.none()
            self.fields["workspace"].queryset = governed

    def clean_username(self):
        try:
            return service_account_username_clean(self.cleaned_data["username"])
        except ValidationError as error:
            raise ValidationError(error.messages) from None

    def _post_clean(self):
        # The row is written by service_account_create (which checks all again); the bare model has no user yet.
        pass


@admin.register(ServiceAccount)
class ServiceAccountAdmin(admin.ModelAdmin):
    list_display = ("user", "workspace", "description", "created_by", "created_at", "is_active")
    list_select_related = ("user", "workspace", "created_by")
    search_fields = ("user__username", "description")
    form = ServiceAccountForm
    readonly_fields = ("user", "workspace", "description", "created_by", "created_at")

    def get_queryset(self, request):
        return service_accounts_governed_by(request.user).select_related("created_by")

    @admin.display(boolean=True, description="active")
    def is_active(self, obj):
        return obj.user.is_active

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)

        class RequestForm(form):
            def __init__(self, *args, **inner):
                super().__init__(*args, request=request, **inner)

        return RequestForm

    def get_fields(self, request, obj=None):
        return ["workspace", "username", "description"] if obj is None else list(self.readonly_fields)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    # Leads of at least one workspace see the page; each row is one of theirs.
    def has_module_permission(self, request):
        user = request.user
        return user.is_active and user.is_staff and workspaces_governed_by(user).exists()

    def has_view_permission(self, request, obj=None):
        if not self.has_module_permission(request):
            return False
        return obj is None or service_accounts_governed_by(request.user).filter(pk=obj.pk).exists()

    def has_add_permission(self, request):
        return self.has_module_permission(request)

    def has_change_permission(self, request, obj=None):
        return False  # created, then governed through rights; never edited here

    def has_delete_permission(self, request, obj=None):
        return False  # an account that acted stays, so the audit trail keeps naming someone

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            account = service_account_create(
                workspace=data["workspace"], username=data["username"], description=data.get("description", ""),
                actor=request.user,
            )  # fmt: skip
        except ValidationError as error:
            # The form cannot be shown again from here; the refusal names the field.
            raise PermissionDenied(" ".join(error.messages)) from None
        for field in ServiceAccount._meta.concrete_fields:  # the admin logs and redirects with ``obj``
            setattr(obj, field.attname, getattr(account, field.attname))
        form.instance = account
        messages.info(request, "Grant its rights on the workspace's or pipeline's permissions page.")

    def save_related(self, request, form, formsets, change):
        pass  # nothing related; the rows were written by service_account_create

"""Service accounts: users that are not people, and who may act as whom.

Every actor is a user: a person, or a service account of one workspace that
an API token acts as. A person never holds a token that acts as someone
else: ``acting_as_check`` is the rule, asked by ``token_create`` and the
forms in front of it.
"""

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet

from audit.services import audit_record
from governance.models import ServiceAccount, Workspace
from governance.permissions import is_governance_lead, workspaces_for_user


def is_service_account(user) -> bool:
    return user is not None and user.pk is not None and ServiceAccount.objects.filter(user_id=user.pk).exists()


def workspaces_governed_by(user) -> QuerySet[Workspace]:
    """The workspaces ``user`` leads: a governance lead holding the lead role's
    ``change_workspace`` right on them; every workspace for a superuser."""
    if user is None or not user.is_authenticated or not user.is_active:
        return Workspace.objects.none()
    if user.is_superuser:
        return Workspace.objects.all()
    if not is_governance_lead(user):
        return Workspace.objects.none()
    return workspaces_for_user(user, "change", inside=False)


def governs(user, workspace: Workspace) -> bool:
    return workspaces_governed_by(user).filter(pk=workspace.pk).exists()


def service_accounts_governed_by(user) -> QuerySet[ServiceAccount]:
    return ServiceAccount.objects.filter(workspace__in=workspaces_governed_by(user)).select_related("user", "workspace")


def service_account_username_clean(username: str) -> str:
    """The username, stripped, if the user model accepts it and nobody has it;
    else a ValidationError naming ``username``."""
    user_model = get_user_model()
    username = (username or "").strip()
    field = user_model._meta.get_field(user_model.USERNAME_FIELD)
    if not username:
        raise ValidationError({"username": "Name the service account."})
    try:
        field.clean(username, None)
    except ValidationError as error:
        raise ValidationError({"username": error.messages}) from None
    if user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).exists():
        raise ValidationError({"username": f"A user named {username!r} already exists."})
    return username


@transaction.atomic
def service_account_create(*, workspace: Workspace, username: str, actor, description: str = "") -> ServiceAccount:
    """Create a service account of ``workspace``: a user with no sign-in.

    1. Only a governance lead of the workspace, or a superuser, creates one.
    2. The username is checked as the user model checks it (valid, unused).
    3. The user is created with an unusable password and no staff status
       (its ``user.created`` event is written by the user model's signal),
       then the account row and its ``service_account.created`` event.
    It holds no rights until a lead grants them (``permission_grant``, ``role_grant``).
    """
    if actor is None or not getattr(actor, "is_authenticated", False) or not governs(actor, workspace):
        raise PermissionDenied("Only a governance lead of the workspace, or a superuser, creates its service accounts.")
    if is_service_account(actor):
        raise PermissionDenied("A service account cannot create service accounts.")
    user_model = get_user_model()
    username = service_account_username_clean(username)
    user = user_model(**{user_model.USERNAME_FIELD: username}, is_staff=False, is_superuser=False, is_active=True)
    user.set_unusable_password()
    user.save()
    account = ServiceAccount.objects.create(
        user=user, workspace=workspace, description=(description or "").strip(), created_by=actor
    )
    audit_record(
        action="service_account.created",
        object_type="user",
        object_id=user.pk,
        payload={"user": username, "workspace": workspace.slug, "description": account.description},
        workspace_id=workspace.pk,
        actor=actor,
    )
    return account


def acting_as_check(*, actor, user, workspace: Workspace) -> None:
    """Refuse unless ``actor`` (a person) may hand out a credential that acts
    as ``user`` within ``workspace``: ``user`` is the actor themself, or a
    service account of ``workspace`` that the actor governs. Superusers too
    never act as another person. Raises ValidationError naming ``user``."""
    if actor is None or not getattr(actor, "is_authenticated", False) or not actor.is_active:
        raise ValidationError({"user": "A token is created by a person, who must be named."})
    if is_service_account(actor):
        raise ValidationError({"user": "A service account cannot create tokens."})
    if user.pk == actor.pk:
        return
    account = ServiceAccount.objects.filter(user_id=user.pk).select_related("workspace").first()
    if account is None:
        raise ValidationError(
            {
                "user": f"{user.get_username()} is another person: a token acts as yourself "
                "or as a service account of a workspace you govern."
            }
        )
    if not governs(actor, account.workspace):
        raise ValidationError(
            {"user": f"{user.get_username()} is a service account of {account.workspace}, which you do not govern."}
        )
    if account.workspace_id != workspace.pk:
        raise ValidationError(
            {"user": f"{user.get_username()} is a service account of {account.workspace}; scope its token there."}
        )

"""Named credentials: who manages them, and reading one's value at call time.

The value is read only where it is used (the provider and webhook layers),
checked against the operator's rules each time, and never returned to
anything that stores, logs or shows it.
"""

from django.core.exceptions import PermissionDenied
from django.db import transaction

from governance.credential_sources import CredentialError, read_env, read_file
from governance.models import Credential, Workspace
from governance.permissions import is_governance_lead


def can_manage_credentials(user, workspace: Workspace) -> bool:
    """Only a governance lead who leads the workspace, or a superuser."""
    if user is None or not user.is_active:
        return False
    return user.is_superuser or (is_governance_lead(user) and user.has_perm("governance.change_workspace", workspace))


@transaction.atomic
def credential_save(*, credential: Credential, actor, reason: str = "") -> Credential:
    """Validate and save a credential; its history record writes the
    ``credential.created``/``credential.changed`` audit event in this transaction."""
    if not can_manage_credentials(actor, credential.workspace):
        raise PermissionDenied("Only a governance lead of the workspace manages its credentials.")
    if credential.pk is not None:
        stored = Credential.objects.filter(pk=credential.pk).values_list("workspace_id", flat=True).first()
        if (
            stored is not None
            and stored != credential.workspace_id
            and not can_manage_credentials(actor, Workspace.objects.get(pk=stored))
        ):
            raise PermissionDenied("Only a governance lead of the workspace manages its credentials.")
    credential.full_clean()
    credential._history_user = actor
    credential._change_reason = reason
    credential.save()
    return credential


@transaction.atomic
def credential_delete(*, credential: Credential, actor) -> None:
    if not can_manage_credentials(actor, credential.workspace):
        raise PermissionDenied("Only a governance lead of the workspace manages its credentials.")
    credential._history_user = actor
    credential.delete()


def credential_value(*, workspace_id: int | None, slug: str = "", env_name: str = "") -> str:
    """The value of the workspace's credential ``slug``; for a release cut
    before credentials existed, of the workspace's credential mapped to
    ``env_name`` (a migrated ``api_key_env`` or ``secret_env``). Raises
    CredentialError, naming the credential, when it cannot be used."""
    if workspace_id is None:
        raise CredentialError("A credential is read only for a workspace.")
    credentials = Credential.objects.filter(workspace_id=workspace_id)
    if slug:
        credential = credentials.filter(slug=slug).first()
        missing = f"The workspace has no credential {slug!r}."
    else:
        credential = credentials.filter(source=Credential.Source.ENV, env_name=env_name).order_by("pk").first()
        missing = f"The workspace has no credential for the environment variable {env_name}."
    if credential is None:
        raise CredentialError(missing)
    try:
        if credential.source == Credential.Source.FILE:
            return read_file(credential.file_name)
        return read_env(credential.env_name)
    except CredentialError as error:
        raise CredentialError(f"Credential {credential.slug!r}: {error}") from None

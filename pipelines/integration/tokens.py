"""Service-account tokens for the API: created, authenticated and revoked here only.

A token reads ``keel_<prefix>_<secret>``: the prefix (8 characters) is stored
in the clear to tell tokens apart, the whole token only as its SHA-256. The
secret carries 256 bits of randomness, so a plain hash (no salt, no slow KDF)
is enough: nothing short of the token itself finds its hash.
"""

import hashlib
import secrets
from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import audit_record
from governance.accounts import acting_as_check
from governance.models import Workspace
from governance.permissions import can_manage_permissions, user_can, user_can_record
from pipelines.models import Pipeline, ServiceToken
from pipelines.queries import token_read

TOKEN_PREFIX = "keel_"
# last_used_at is written at most this often per token: a busy token would
# otherwise cost one UPDATE per request.
LAST_USED_GRANULARITY = timedelta(seconds=60)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _event(token: ServiceToken, action: str, actor, payload: dict) -> None:
    audit_record(
        action=action,
        object_type="service_token",
        object_id=token.pk,
        payload={
            "name": token.name,
            "prefix": token.prefix,
            "user": token.user.get_username(),
            "user_id": token.user_id,
            "created_by_id": token.created_by_id,
            "workspace": token.workspace.slug if token.workspace_id else None,
            "pipeline": token.pipeline.slug if token.pipeline_id else None,
            **payload,
        },
        workspace_id=token.audit_workspace_id,
        pipeline_id=token.pipeline_id,
        actor=actor,
    )


@transaction.atomic
def token_create(
    *, user, name: str, actor, pipeline: Pipeline | None = None, workspace: Workspace | None = None
) -> tuple[ServiceToken, str]:
    """Create a token for ``user`` scoped to one pipeline or one workspace;
    returns (token, the plain token), which is never available again.

    ``actor`` (a person, never nobody) creates it, and only a token that acts
    as themselves or as a service account of a workspace they govern, scoped
    inside that workspace (``acting_as_check``): superusers too never act as
    another person. The user must be able to see the scope: a token that could
    reach nothing is a mistake worth saying so at once.
    """
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Name the token (what system uses it)."})
    if (pipeline is None) == (workspace is None):
        raise ValidationError({"scope": "Scope a token to one pipeline or one workspace."})
    scope = pipeline or workspace
    acting_as_check(actor=actor, user=user, workspace=pipeline.workspace if pipeline is not None else workspace)
    if not user.is_active:
        raise ValidationError({"user": f"{user.get_username()} is inactive."})
    if not user_can(user, "view", scope):
        raise ValidationError(
            {"user": f"{user.get_username()} holds no right on {scope}; the token would reach nothing."}
        )
    for _ in range(5):  # a prefix collision is astronomically rare; try again rather than fail
        prefix = secrets.token_hex(4)
        if not ServiceToken.objects.filter(prefix=prefix).exists():
            break
    plain = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    token = ServiceToken.objects.create(
        name=name[:200],
        user=user,
        pipeline=pipeline,
        workspace=workspace,
        prefix=prefix,
        key_sha256=_digest(plain),
        created_by=actor,
    )
    _event(token, "token.created", actor, {})
    return token, plain


@transaction.atomic
def token_revoke(*, token: ServiceToken, actor) -> ServiceToken:
    """Revoke at once: the next request with the token is refused."""
    if not token_can_manage(actor, token):
        raise PermissionDenied("Revoking this token needs the right to manage permissions on its scope.")
    token = ServiceToken.objects.select_for_update().get(pk=token.pk)
    if token.is_revoked:
        raise ValidationError(f"Token {token.prefix} was already revoked.")
    token.revoked_at = timezone.now()
    token.revoked_by = actor if getattr(actor, "is_authenticated", False) else None
    token.save(update_fields=["revoked_at", "revoked_by"])
    _event(token, "token.revoked", actor, {})
    return token


def token_can_manage(user, token: ServiceToken) -> bool:
    """Superusers, leads who manage rights on the scope, and the token's own user."""

    if user is None or not getattr(user, "is_authenticated", False):
        return False
    return user.pk == token.user_id or can_manage_permissions(user, token.scope)


def token_authenticate(plain: str) -> ServiceToken | None:
    """The live token for this text, or None (unknown, malformed or revoked).

    The token arrives with its user and (for a pipeline token) its pipeline,
    read in one statement (pipelines/queries.py), with the user's view and
    change rights on that pipeline (what a run's creation asks), filed for the
    request's ``permission_cache`` block.
    """
    if not plain.startswith(TOKEN_PREFIX) or len(plain) > 200:
        return None
    found = token_read(_digest(plain), PIPELINE_RIGHTS)
    if found is None:
        return None
    token, rights, creator_name = found
    token.created_by_name = creator_name  # for the audit context (None if unknown)
    token.authenticated_pipeline = token.pipeline  # read with the token: the API's selectors use it
    if token.is_revoked or not token.user.is_active:
        return None
    if token.pipeline is not None:
        user_can_record(token.user, token.pipeline, rights)
    now = timezone.now()
    if token.last_used_at is None or token.last_used_at < now - LAST_USED_GRANULARITY:
        # A conditional UPDATE, so concurrent requests write it once.
        stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_GRANULARITY)
        ServiceToken.objects.filter(stale, pk=token.pk).update(last_used_at=now)
    return token


# The rights the token read answers on a pipeline token's pipeline: finding it, and starting a run.
PIPELINE_RIGHTS = ("view", "change")

"""Who may do what to which object: guardian object permissions, on the object
itself or on its workspace. Deny by default; superusers pass.

Actions: ``view``, ``change``, ``approve_release``, ``deploy_pipeline``,
``review_output``, ``view_audit``. A step answers for its pipeline, an approval
policy for its workspace. On a workspace, ``change`` of anything inside it is
the ``change_config`` right; ``change`` of the workspace row itself is
``change_workspace``.

Governance imports nothing from the apps above it, so models are handled by
their ``_meta`` and by two conventions: ``permission_parent_field`` names the
foreign key an object without rights of its own answers to, and everything
else has a ``workspace`` foreign key.
"""

from contextlib import contextmanager
from contextvars import ContextVar

from django.db.models import Model, Q, QuerySet
from django.db.models.expressions import RawSQL

from governance.models import Workspace
from governance.queries import granted_keys, grants_held, rights_columns
from governance.roles import GOVERNANCE_LEADS

ACTIONS = ("view", "change", "approve_release", "deploy_pipeline", "review_output", "view_audit")
PIPELINE_ONLY = ("approve_release", "deploy_pipeline", "review_output", "view_audit")


def _own_codename(model, action: str) -> str | None:
    """The object's own permission for an action, or None when it has none."""
    meta = model._meta
    codename = f"{action}_{meta.model_name}" if action in ("view", "change") else action
    known = {c for c, _ in meta.permissions} | {f"{a}_{meta.model_name}" for a in meta.default_permissions}
    return f"{meta.app_label}.{codename}" if codename in known else None


def _workspace_codename(action: str, *, inside: bool) -> str:
    if action == "view":
        return "governance.view_workspace"
    if action == "change":
        return "governance.change_config" if inside else "governance.change_workspace"
    return f"governance.{action}"


def _target(obj: Model | None) -> Model | None:
    """What answers for ``obj``'s rights; None for an object whose parent is
    not set (a form left it empty), which nobody holds a right on."""
    if obj is None:
        return None
    parent_field = getattr(obj, "permission_parent_field", None)
    if not parent_field:
        return obj
    parent_id = getattr(obj, obj._meta.get_field(parent_field).attname)
    return _target(getattr(obj, parent_field)) if parent_id is not None else None


# user_can's answers within one permission_cache() block; None outside any.
_answers: ContextVar[dict | None] = ContextVar("keel_permission_answers", default=None)


@contextmanager
def permission_cache():
    """Within the block, ``user_can`` asks guardian each (user, action, object)
    question once: a request whose view and services check the same right
    (a review decision checks it three times) pays for it once.

    Only for one request's or one task's work, in which no right is granted or
    revoked: a change made inside the block is not seen by it. The answers
    live in a context variable that the block resets on exit, so nothing
    crosses into another request, thread or user. A nested block shares the
    outer one's answers."""
    if _answers.get() is not None:
        yield
        return
    token = _answers.set({})
    try:
        yield
    finally:
        _answers.reset(token)


def user_can(user, action: str, obj: Model) -> bool:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if user is None or not user.is_active or not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    if obj is None:
        return False  # e.g. a budget whose scope a form left empty
    answers = _answers.get()
    if answers is None or obj.pk is None or user.pk is None:
        return _user_can(user, action, obj)
    key = (user.pk, action, obj._meta.label, obj.pk)
    if key not in answers:
        answers[key] = _user_can(user, action, obj)
    return answers[key]


def user_can_prefetch(user, actions: tuple[str, ...], obj: Model) -> None:
    """Inside a ``permission_cache()`` block, settle ``user_can(user, action,
    obj)`` for each of ``actions`` with one query, so that the checks that
    follow are answered from the block: a run created over the API checks
    the view right (to find the pipeline) and then the change right (to start
    it). Outside a block, or where ``user_can`` asks nothing, it does nothing."""
    answers = _answers.get()
    if answers is None or obj.pk is None or user is None or user.pk is None:
        return
    if user.is_superuser or not (user.is_active and user.is_authenticated):
        return  # user_can answers without asking
    keys = {action: (user.pk, action, obj._meta.label, obj.pk) for action in actions}
    pending = [action for action in actions if keys[action] not in answers]
    held = _granted_each(user, {action: _grants(action, obj) for action in pending})
    for action in pending:
        answers[keys[action]] = action in held


def rights_sql(
    model: type[Model], actions: tuple[str, ...], *, user: str, key: str, workspace: str
) -> tuple[str, list]:
    """Columns for a SELECT, one per action, each true when the user whose key
    is the column ``user`` may take the action on the ``model`` row whose key
    is the column ``key`` (and its workspace's, ``workspace``), as ``user_can``
    decides it for a user who is active and not a superuser; with their
    parameters, in order. For a statement that reads a user and an object
    anyway (the API's token read, with the token's pipeline): the answers
    ride along, and ``user_can_record`` files them for the request."""
    if model is Workspace or getattr(model, "permission_parent_field", None):
        raise ValueError(f"rights_sql answers for models under a workspace, not {model.__name__}")
    per_action = []
    for action in actions:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        own = _own_codename(model, action)
        grants = [(model, key, own)] if own else []  # as _grants has them
        if own or action not in PIPELINE_ONLY:
            grants.append((Workspace, workspace, _workspace_codename(action, inside=True)))
        per_action.append([(grant_model, key_column, permission.split(".", 1)[1])
                           for grant_model, key_column, permission in grants])  # fmt: skip
    return rights_columns(user, per_action)


def user_can_record(user, obj: Model, answers: dict[str, bool]) -> None:
    """File answers read elsewhere (``rights_sql``) in the current
    ``permission_cache`` block, as ``user_can`` would have filed them; nothing
    outside a block."""
    cache = _answers.get()
    if cache is None or obj.pk is None or user is None or user.pk is None:
        return
    for action, granted in answers.items():
        cache.setdefault((user.pk, action, obj._meta.label, obj.pk), bool(granted))


def _user_can(user, action: str, obj: Model) -> bool:
    return action in _granted_each(user, {action: _grants(action, obj)})


def _grants(action: str, obj: Model) -> list[tuple[type[Model], object, str]]:
    """The guardian permissions (model, object key, permission) any one of
    which grants ``action`` on ``obj``: its own, or its workspace's."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    target = _target(obj)
    if target is None:
        return []
    if isinstance(target, Workspace):
        return [(Workspace, target.pk, _workspace_codename(action, inside=target is not obj))]
    own = _own_codename(type(target), action)
    if action in PIPELINE_ONLY and own is None:
        return []  # e.g. review_output means nothing on a prompt template
    grants = [(type(target), target.pk, own)] if own else []
    grants.append((Workspace, target.workspace_id, _workspace_codename(action, inside=True)))
    return grants


def _granted_each(user, grants_by_action: dict[str, list[tuple[type[Model], object, str]]]) -> set[str]:
    """The actions for which guardian holds any of their grants (model,
    object key, permission) for the user, directly or through one of their
    groups: what ``user.has_perm(permission, obj)`` answers for each
    (guardian is the only backend with object permissions), asked in one
    query instead of two per object and action. An unsaved object has no
    rights yet."""
    actions = list(grants_by_action)
    grants = [
        (index, model, pk, permission.split(".", 1)[1])
        for index, action in enumerate(actions)
        for model, pk, permission in grants_by_action[action]
        if pk is not None
    ]
    return {actions[index] for index in grants_held(user.pk, grants)}


def workspaces_for_user(user, action: str, *, inside: bool = True) -> QuerySet[Workspace]:
    if user.is_superuser:
        return Workspace.objects.all()
    if not user.is_active:
        return Workspace.objects.none()
    codename = _workspace_codename(action, inside=inside)
    return Workspace.objects.filter(pk__in=_granted(user, codename, Workspace))


def _granted(user, permission: str, model: type[Model]) -> RawSQL:
    """The keys of the ``model`` objects guardian grants ``permission``
    (app_label.codename) to the user on, as a subquery: guardian's
    ``get_objects_for_user`` without global permissions, written once as SQL
    (governance.queries.granted_keys) instead of compiling guardian's nested
    querysets on every listing."""
    return RawSQL(*granted_keys(model, permission.split(".", 1)[1], user.pk))


def filter_for_user(user, action: str, queryset: QuerySet) -> QuerySet:
    """``queryset`` narrowed to the objects ``user`` may ``action``."""
    if not user.is_authenticated or not user.is_active:
        return queryset.none()
    if user.is_superuser:
        return queryset
    model = queryset.model
    if model is Workspace:
        return queryset.filter(pk__in=workspaces_for_user(user, action, inside=False))
    parent_field = getattr(model, "permission_parent_field", None)
    if parent_field == "workspace":
        return queryset.filter(workspace__in=workspaces_for_user(user, action))
    if parent_field:
        parent_model = model._meta.get_field(parent_field).related_model
        allowed = filter_for_user(user, action, parent_model.objects.all())
        return queryset.filter(**{f"{parent_field}__in": allowed})
    condition = Q(workspace__in=workspaces_for_user(user, action))
    own = _own_codename(model, action)
    if own:
        condition |= Q(pk__in=_granted(user, own, model))
    elif action in PIPELINE_ONLY:
        return queryset.none()
    return queryset.filter(condition)


def inherited_from_workspace(model: type[Model]) -> dict[str, str]:
    """The workspace rights that reach every ``model`` object in the
    workspace, as {workspace permission codename: action on the object}
    (what ``_grants`` consults besides the object's own rights)."""
    if model is Workspace:
        return {}
    return {
        _workspace_codename(action, inside=True).split(".", 1)[1]: action
        for action in ACTIONS
        if action not in PIPELINE_ONLY or _own_codename(model, action)
    }


def is_governance_lead(user) -> bool:

    return user.is_superuser or user.groups.filter(name=GOVERNANCE_LEADS).exists()


def can_manage_permissions(user, obj: Model) -> bool:
    """Only superusers, and governance leads who lead the object's workspace and
    may change the object, grant and revoke rights on it."""
    if not user.is_active:
        return False
    if user.is_superuser:
        return True
    # The leads group is site-wide, so membership alone would let a lead of one
    # workspace manage rights wherever they are merely a prompt engineer; leading
    # this object's workspace is the lead role's change_workspace right on it.
    target = _target(obj)
    workspace = target if isinstance(target, Workspace) else getattr(target, "workspace", None)
    if workspace is None:
        return False
    return (
        is_governance_lead(user)
        and user.has_perm("governance.change_workspace", workspace)
        and user_can(user, "change", obj)
    )


def can_change_change_policy(user, workspace: Workspace) -> bool:
    """A change policy sets the bar every release must pass, so only a
    governance lead who leads its workspace changes one (a prompt engineer's
    change_config right is not enough)."""
    if not user.is_active:
        return False
    return user.is_superuser or (is_governance_lead(user) and user.has_perm("governance.change_workspace", workspace))


def is_governed(model: type[Model]) -> bool:
    """Whether rights decide who may see and change rows of ``model``: a
    workspace, an object that answers to another (``permission_parent_field``),
    or one with a ``workspace`` foreign key. Accounts, groups and the
    libraries' own tables are not: only model permissions guard them."""
    if model is Workspace or getattr(model, "permission_parent_field", None):
        return True
    return any(f.is_relation and f.related_model is Workspace and f.name == "workspace" for f in model._meta.fields)


def user_can_link(user, target: Model) -> bool:
    """Whether ``user`` may make an object point at ``target`` (a foreign key or
    many-to-many value): the change right on it. For a workspace that is the
    right to change what is inside it (``change_config``), not to edit the
    workspace itself. Objects that are not governed carry no such right."""
    if not is_governed(type(target)):
        return True
    if isinstance(target, Workspace):
        return workspaces_for_user(user, "change").filter(pk=target.pk).exists()
    return user_can(user, "change", target)


def linkable_for_user(user, queryset: QuerySet) -> QuerySet:
    """``queryset`` narrowed to what ``user_can_link`` allows: the choices of a
    foreign-key or many-to-many field in a form."""
    model = queryset.model
    if not is_governed(model):
        return queryset
    if model is Workspace:
        return queryset.filter(pk__in=workspaces_for_user(user, "change"))
    return filter_for_user(user, "change", queryset)

"""Role groups. A role says what kind of thing its members may do (model-level
permissions: which admin pages they get); a grant on a workspace or pipeline
says where (object permissions). The admin needs both.

``role_groups_ensure`` is idempotent: it runs after every migrate and from
``keel_demo``, and resets each role group's model permissions to this table.
"""

from django.contrib.auth.models import Group, Permission
from django.db.models import Q

GOVERNANCE_LEADS = "Governance leads"
PROMPT_ENGINEERS = "Prompt engineers"
REVIEWERS = "Reviewers"
AUDITORS = "Auditors"
OPERATORS = "Operators"

_CONFIG = ("pipelines.pipeline", "pipelines.step", "pipelines.prompttemplate", "pipelines.modelconfig")
# Read-only records of what was released, deployed and run: visible to every staff role.
_RELEASES = (
    "pipelines.release:view",
    "pipelines.deployment:view",
    "pipelines.run:view",
    "pipelines.steprun:view",
    "pipelines.delivery:view",
    "pipelines.evaluation:view",
    "pipelines.evaluationcase:view",
    "governance.changepolicy:view",
    # Who decided what on the pipeline's review tasks (the admin's read-only pages).
    "reviews.reviewtask:view",
    "reviews.reviewdecision:view",
)
# Only governance leads change a change policy (the admin checks the role too).
_CHANGE_POLICY = [f"governance.changepolicy:{a}" for a in ("view", "add", "change", "delete")]
_CASES = [f"pipelines.evaluationcase:{a}" for a in ("view", "add", "change", "delete")]
# Only governance leads manage credentials (the admin checks leading the workspace too);
# those who build model configs and audit them see their names and sources, never values.
_CREDENTIALS = [f"governance.credential:{a}" for a in ("view", "add", "change", "delete")]

# role -> (model-level permissions, the object rights a workspace grant of the role gives)
ROLES: dict[str, tuple[list[str], list[str]]] = {
    GOVERNANCE_LEADS: (
        [f"{m}:{a}" for m in (*_CONFIG, "governance.approvalpolicy") for a in ("view", "add", "change", "delete")]
        + ["governance.workspace:view", "governance.workspace:add", "governance.workspace:change", *_RELEASES]
        + _CHANGE_POLICY
        + _CASES
        + _CREDENTIALS,
        [
            "view_workspace",
            "change_workspace",
            "change_config",
            "approve_release",
            "deploy_pipeline",
            "review_output",
            "view_audit",
        ],
    ),
    PROMPT_ENGINEERS: (
        [f"{m}:{a}" for m in _CONFIG for a in ("view", "add", "change")]
        + ["governance.approvalpolicy:view", "governance.workspace:view", "governance.credential:view", *_RELEASES]
        + _CASES,
        ["view_workspace", "change_config", "deploy_pipeline"],
    ),
    REVIEWERS: ([], ["review_output"]),
    AUDITORS: (
        [f"{m}:view" for m in (*_CONFIG, "governance.approvalpolicy", "governance.workspace", "governance.credential")]
        + list(_RELEASES),
        ["view_workspace", "view_audit"],
    ),
    OPERATORS: (
        ["pipelines.pipeline:view", "pipelines.step:view", "governance.workspace:view", *_RELEASES],
        ["view_workspace", "deploy_pipeline"],
    ),
}


def _permissions(entries: list[str]) -> list[Permission]:
    query = Q(pk__in=[])
    for entry in entries:
        model, action = entry.split(":")
        app_label, model_name = model.split(".")
        query |= Q(content_type__app_label=app_label, codename=f"{action}_{model_name}")
    return list(Permission.objects.filter(query))


def role_groups_ensure() -> dict[str, Group]:
    groups = {}
    for name, (model_perms, _) in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(_permissions(model_perms))
        groups[name] = group
    return groups

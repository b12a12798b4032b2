"""Change policies: validated, history-tracked, audited, and changed only by
a governance lead of their workspace."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse

from audit.context import acting_as
from audit.models import AuditEvent
from governance.models import ChangePolicy


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("approvals_required", 0, "greater than or equal to 1"),
        ("approvals_required", 4, "less than or equal to 3"),
        ("min_pass_rate", "1.5", "less than or equal to 1"),
        ("canary_max_failure_rate", "-0.1", "greater than or equal to 0"),
        ("notify", ["not-an-address"], "is not an e-mail address"),
        ("notify", "ops@acme.test", "List e-mail addresses"),
    ],
)
def test_bad_values_are_refused_naming_the_field(acme, field, value, message):
    policy = ChangePolicy(workspace=acme, **{field: value})
    with pytest.raises(ValidationError) as refused:
        policy.full_clean()
    assert field in refused.value.message_dict
    assert any(message in m for m in refused.value.message_dict[field])


def test_the_database_refuses_approvals_outside_1_to_3_and_a_second_workspace_default(acme):
    with pytest.raises(IntegrityError), transaction.atomic():
        ChangePolicy.objects.create(workspace=acme, approvals_required=5)
    ChangePolicy.objects.create(workspace=acme)
    with pytest.raises(IntegrityError), transaction.atomic():
        ChangePolicy.objects.create(workspace=acme)


def test_a_pipelines_policy_must_be_in_its_workspace(acme_config, globex):
    policy = ChangePolicy(workspace=globex, pipeline=acme_config["pipeline"])
    with pytest.raises(ValidationError, match="belong to the policy's workspace"):
        policy.full_clean()


def test_changes_are_history_tracked_and_audited(acme, lead):
    with acting_as(lead):
        policy = ChangePolicy.objects.create(workspace=acme, approvals_required=1)
        policy.approvals_required = 2
        policy.save()
    assert [h.approvals_required for h in policy.history.order_by("history_date")] == [1, 2]
    assert policy.history.first().history_user == lead
    actions = list(AuditEvent.objects.filter(object_type="change_policy").values_list("action", flat=True))
    assert actions == ["change_policy.created", "change_policy.changed"]


def test_only_a_governance_lead_adds_or_changes_one_in_the_admin(client, acme, lead, author):
    with acting_as(lead):
        policy = ChangePolicy.objects.create(workspace=acme, approvals_required=2)
    change = reverse("admin:governance_changepolicy_change", args=[policy.pk])
    add = reverse("admin:governance_changepolicy_add")
    form = {"workspace": acme.pk, "approvals_required": 1, "min_pass_rate": "0", "block_regressions": "",
            "canary_max_failure_rate": "0.5", "canary_max_rejection_rate": "0.5", "canary_min_runs": 1,
            "notify": "[]"}  # fmt: skip
    client.force_login(author)  # a prompt engineer: may change configuration, not the bar it must pass
    assert client.get(add).status_code == 403
    client.post(change, form)
    assert ChangePolicy.objects.get(pk=policy.pk).approvals_required == 2
    client.force_login(lead)
    response = client.post(change, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert ChangePolicy.objects.get(pk=policy.pk).approvals_required == 1

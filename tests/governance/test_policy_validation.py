import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from governance.models import ApprovalPolicy
from tests import factories


def errors_of(instance) -> dict:
    with pytest.raises(ValidationError) as caught:
        instance.full_clean()
    return caught.value.message_dict


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"confidence_threshold": "1.5"}, "confidence_threshold"),
        ({"confidence_threshold": "-0.1"}, "confidence_threshold"),
        ({"sample_rate": "2"}, "sample_rate"),
        ({"required_approvals": 4}, "required_approvals"),
        ({"required_approvals": 0}, "required_approvals"),
        ({"review_deadline_hours": 0}, "review_deadline_hours"),
        ({"review_mode": "sometimes"}, "review_mode"),
    ],
)
def test_out_of_range_policy_numbers_are_refused_naming_the_field(acme, changes, field):
    policy = factories.ApprovalPolicyFactory.build(workspace=acme, **changes)
    assert field in errors_of(policy)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"field": "label"}, "Rules must be a list"),
        (["label == refund"], "Rule 1 must be an object"),
        ([{"field": "label", "operator": "eval", "value": "x"}], "Rule 1: operator must be one of"),
        ([{"field": "__import__('os')", "operator": "eq", "value": 1}], "Rule 1: field must be a dotted name"),
        ([{"field": "confidence", "operator": "lt", "value": "low"}], "Rule 1: operator lt needs a number"),
        ([{"field": "label", "operator": "in", "value": []}], "needs a non-empty list"),
        ([{"field": "draft", "operator": "contains", "value": ""}], "needs non-empty text"),
        ([{"field": "label", "operator": "eq"}], "Rule 1: value is required"),
        (
            [{"field": "label", "operator": "eq", "value": "ok"}, {"field": "x", "operator": "gt", "value": True}],
            "Rule 2: operator gt needs a number",
        ),
    ],
)
def test_malformed_rules_are_refused_naming_the_rule(acme, rules, message):
    policy = factories.ApprovalPolicyFactory.build(workspace=acme, rules=rules)
    assert message in " ".join(errors_of(policy)["rules"])


def test_well_formed_rules_are_accepted(acme):
    policy = factories.ApprovalPolicyFactory.build(
        workspace=acme,
        rules=[
            {"field": "label", "operator": "in", "value": ["refund", "legal"]},
            {"field": "confidence", "operator": "lt", "value": 0.6},
            {"field": "draft", "operator": "contains", "value": "guarantee"},
            {"field": "fields.order_total", "operator": "gte", "value": 500},
        ],
    )
    policy.full_clean()


def test_the_database_also_refuses_out_of_range_numbers(acme):
    with pytest.raises(IntegrityError), transaction.atomic():
        ApprovalPolicy.objects.create(workspace=acme, name="Too many", required_approvals=5)

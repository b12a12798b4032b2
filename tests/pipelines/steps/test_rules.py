import pytest

from governance.rules import evaluate_rules

DOCUMENT = {
    "label": "refund",
    "confidence": 0.62,
    "draft": "We GUARANTEE delivery.",
    "tags": ["Urgent", "vip"],
    "flag": True,
    "fields": {"order_total": 120, "items": [{"sku": "A1"}]},
}


def rule(field, operator, value):
    return {"field": field, "operator": operator, "value": value}


@pytest.mark.parametrize(
    ("field", "operator", "value", "matches"),
    [
        ["label", "eq", "refund", True],
        ["label", "eq", "Refund", False],
        ["label", "ne", "billing", True],
        ["confidence", "lt", 0.75, True],
        ["confidence", "lte", 0.62, True],
        ["confidence", "gt", 0.62, False],
        ["fields.order_total", "gte", 100, True],
        ["label", "in", ["refund", "complaint"], True],
        ["label", "not_in", ["refund", "complaint"], False],
        ["draft", "contains", "guarantee", True],
        ["draft", "not_contains", "guarantee", False],
        ["tags", "contains", "urgent", True],
        ["tags", "not_contains", "spam", True],
        ["fields.items.0.sku", "eq", "A1", True],
        ["flag", "eq", 1, False],
        ["flag", "eq", True, True],
        ["label", "gt", 0, False],
        ["fields", "contains", "order_total", False],
        ["fields", "not_contains", "anything", False],
    ],
)
def test_each_operator_compares_the_dotted_field(field, operator, value, matches):
    assert (evaluate_rules([rule(field, operator, value)], DOCUMENT) != []) is matches


@pytest.mark.parametrize(
    "field",
    ["missing", "fields.missing", "label.sub", "fields.items.5.sku", "fields.items.x", "confidence.0"],
)
@pytest.mark.parametrize(
    ("operator", "value"),
    [["eq", None], ["ne", "x"], ["not_in", ["x"]], ["not_contains", "x"], ["lt", 1]],
)
def test_a_field_the_document_does_not_have_never_matches(field, operator, value):
    assert evaluate_rules([rule(field, operator, value)], DOCUMENT) == []


def test_a_null_field_is_present_and_compares_as_null():
    assert evaluate_rules([rule("note", "eq", None)], {"note": None}) == [rule("note", "eq", None)]


def test_it_returns_the_matching_rules_in_their_order():
    rules = [rule("draft", "contains", "guarantee"), rule("label", "eq", "billing"), rule("label", "in", ["refund"])]
    assert evaluate_rules(rules, DOCUMENT) == [rules[0], rules[2]]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        [rule("label", "matches", ".*"), "unknown rule operator 'matches'"],
        [rule("fields..total", "eq", 1), "rule field must be a dotted name"],
        [rule("__import__('os')", "eq", 1), "rule field must be a dotted name"],
    ],
)
def test_a_malformed_rule_raises_rather_than_silently_not_matching(bad, message):
    with pytest.raises(ValueError, match=message):
        evaluate_rules([bad], DOCUMENT)

"""Patterns over data someone sent run on RE2, whose matching is linear in the text."""

import re2

from governance.patterns import PatternError, linear_compile, pattern_problem
from governance.rules import FIELD_PATTERN, validate_rules

RE2_PATTERN = type(re2.compile("x"))


def test_it_compiles_a_nested_quantifier_to_an_re2_pattern_that_answers_correctly():
    # (a+)+$ backtracks exponentially in Python's re; RE2 runs it as an automaton.
    pattern = linear_compile("(a+)+$")
    assert isinstance(pattern, RE2_PATTERN)
    assert pattern.search("a" * 100_000 + "!") is None
    assert pattern.search("b" + "a" * 100_000).span() == (1, 100_001)


def test_it_refuses_look_around_and_backreferences_naming_why():
    for pattern in ("(?<=x)a", "a(?!b)", r"(a)\1", r"a\Z"):
        problem = pattern_problem(pattern)
        assert problem and "RE2 cannot compile it" in problem
    try:
        linear_compile("(?<=x)a")
    except PatternError as exc:
        assert "invalid perl operator" in str(exc)
    else:
        raise AssertionError("look-behind compiled")


def test_it_refuses_a_pattern_whose_automaton_would_be_too_big():
    assert "RE2 cannot compile it" in pattern_problem("a{1000}{1000}")


def test_policy_rule_fields_are_checked_with_re2():
    assert isinstance(FIELD_PATTERN, RE2_PATTERN)
    validate_rules([{"field": "fields.total", "operator": "gt", "value": 1}])
    long_field = "a" * 200_000 + "!"
    try:
        validate_rules([{"field": long_field, "operator": "eq", "value": 1}])
    except Exception as exc:  # a ValidationError naming the rule
        assert "Rule 1: field must be a dotted name" in str(exc)
    else:
        raise AssertionError("a field that is not a dotted name was accepted")

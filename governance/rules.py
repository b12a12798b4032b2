"""Approval-policy rules: structured data (field, operator, value), never code.

A rule reads one field of a gate's input by a dotted path (``label``,
``confidence``, ``fields.order_total``, ``draft``) and compares it with a value.
"""

import re

from django.core.exceptions import ValidationError

FIELD_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")

# operator -> the kind of value it takes
OPERATORS: dict[str, str] = {
    "eq": "scalar",
    "ne": "scalar",
    "lt": "number",
    "lte": "number",
    "gt": "number",
    "gte": "number",
    "in": "list",
    "not_in": "list",
    "contains": "text",
    "not_contains": "text",
}


def validate_rules(rules: object) -> None:
    """Refuse a malformed rule list with a message naming the rule and field."""
    if not isinstance(rules, list):
        raise ValidationError({"rules": "Rules must be a list of {field, operator, value} objects."})
    errors: list[str] = []
    for index, rule in enumerate(rules, start=1):
        where = f"Rule {index}"
        if not isinstance(rule, dict):
            errors.append(f"{where} must be an object with field, operator and value.")
            continue
        unknown = set(rule) - {"field", "operator", "value"}
        if unknown:
            errors.append(f"{where} has unknown keys: {', '.join(sorted(unknown))}.")
        field = rule.get("field")
        if not isinstance(field, str) or not FIELD_PATTERN.match(field):
            errors.append(f"{where}: field must be a dotted name such as 'label' or 'fields.total'.")
        operator = rule.get("operator")
        if operator not in OPERATORS:
            errors.append(f"{where}: operator must be one of {', '.join(OPERATORS)}, not {operator!r}.")
            continue
        if "value" not in rule:
            errors.append(f"{where}: value is required.")
            continue
        value = rule["value"]
        kind = OPERATORS[operator]
        if kind == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            errors.append(f"{where}: operator {operator} needs a number as value.")
        elif kind == "list" and not (isinstance(value, list) and value):
            errors.append(f"{where}: operator {operator} needs a non-empty list as value.")
        elif kind == "text" and not (isinstance(value, str) and value):
            errors.append(f"{where}: operator {operator} needs non-empty text as value.")
        elif kind == "scalar" and isinstance(value, (list, dict)):
            errors.append(f"{where}: operator {operator} needs a single value, not a list or object.")
    if errors:
        raise ValidationError({"rules": errors})

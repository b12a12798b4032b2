"""Approval-policy rules: structured data (field, operator, value), never code.

A rule reads one field of a gate's input by a dotted path (``label``,
``confidence``, ``fields.order_total``, ``draft``) and compares it with a value.
"""

from django.core.exceptions import ValidationError

from governance.patterns import linear_compile

# RE2, as every pattern over data someone sent (governance/patterns.py).
FIELD_PATTERN = linear_compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")

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


_MISSING = object()


def _resolve(document: object, field: str) -> object:
    # A digit segment indexes a list (``items.0.sku``); anything unreachable is missing.
    value = document
    for part in field.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(a: object, b: object) -> bool:
    # JSON's true is not the number 1, although Python says True == 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def _contains(haystack: object, needle: object) -> bool | None:
    """Case-insensitive substring of text or member of a list; None when the field is neither."""
    if isinstance(haystack, str):
        return isinstance(needle, str) and needle.casefold() in haystack.casefold()
    if isinstance(haystack, list):
        folded = needle.casefold() if isinstance(needle, str) else needle
        return any(_same(item.casefold() if isinstance(item, str) else item, folded) for item in haystack)
    return None


def _matches(operator: str, actual: object, value: object) -> bool:
    if operator == "eq":
        return _same(actual, value)
    if operator == "ne":
        return not _same(actual, value)
    if operator in ("lt", "lte", "gt", "gte"):
        # Only numbers compare: "0.5" in a text field is not a confidence.
        if not (_is_number(actual) and _is_number(value)):
            return False
        return {"lt": actual < value, "lte": actual <= value, "gt": actual > value, "gte": actual >= value}[operator]
    if operator in ("in", "not_in"):
        found = isinstance(value, list) and any(_same(actual, item) for item in value)
        return found if operator == "in" else not found
    if operator in ("contains", "not_contains"):
        found = _contains(actual, value)
        if found is None:
            return False
        return found if operator == "contains" else not found
    raise ValueError(f"unknown rule operator {operator!r}")


def evaluate_rules(rules: list[dict], document: dict) -> list[dict]:
    """The rules that match ``document``, in their order.

    A field the document does not have never matches, whatever the operator
    (``ne`` and ``not_in`` included): a rule only speaks about what is there.
    A malformed rule raises ValueError rather than silently never matching.
    """
    hits = []
    for rule in rules:
        field, operator = rule.get("field"), rule.get("operator")
        if not isinstance(field, str) or not FIELD_PATTERN.match(field):
            raise ValueError(f"rule field must be a dotted name, not {field!r}")
        if operator not in OPERATORS:
            raise ValueError(f"unknown rule operator {operator!r}")
        actual = _resolve(document, field)
        if actual is not _MISSING and _matches(operator, actual, rule.get("value")):
            hits.append(rule)
    return hits

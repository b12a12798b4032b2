"""redact: mask personal data in chosen text fields, the same way every time.

Built-in patterns are deliberately conservative: a pipeline that masks an order
id or a date loses information a person needs, so a card number must pass the
Luhn check and a phone number must look like one (international, in
parentheses, with a trunk 0, or the North American 3-3-4), never a bare run of
digits or a date.
"""

import re
from collections.abc import Callable

from pipelines.steps.base import StepContext, StepError, StepResult, json_copy
from pipelines.steps.documents import MISSING, get_path, set_path

BUILTIN_ORDER = ("email", "card", "phone")  # e-mail first (it holds digits), cards before phones

EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
# Candidates only: 13 to 19 digits in optional single-space or dash groups, checked by _is_card.
CARD = re.compile(r"(?<![\w+.-])\d(?:[ -]?\d){12,18}(?![\w-]|[.,]\d)")
# Candidates only: digits in groups split by one space, dot or dash, with an
# optional +country code and (area code); checked by _is_phone.
PHONE = re.compile(
    r"(?<![\w+@/.,-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{1,12}(?:[ .-]\d{1,12})*(?![\w@/]|[.,-]\d)"
)
_DATE_SHAPES = {(4, 2, 2), (2, 2, 4), (1, 2, 4), (2, 1, 4), (1, 1, 4), (4, 1, 1), (4, 2, 1), (4, 1, 2)}


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _is_card(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    # Issued card numbers start with 2 to 6; the rest are ids that happen to pass Luhn.
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and _luhn(digits)


def _is_phone(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    if not 7 <= len(digits) <= 15:
        return False
    if text.startswith("+") or "(" in text:
        return True
    groups = re.split(r"[ .-]", text)
    if len(groups) == 1:
        return False  # a bare run of digits is far more often an id than a phone number
    if tuple(len(g) for g in groups) in _DATE_SHAPES:
        return False
    if groups[0].startswith("0") and 2 <= len(groups[0]) <= 5:
        return True  # national format with a trunk prefix: 020 7946 0958, 06 12 34 56 78
    shape = [len(g) for g in groups]
    return shape == [3, 3, 4] or (shape == [1, 3, 3, 4] and groups[0] == "1")


# name -> (candidate pattern, check of a candidate)
BUILTINS: dict[str, tuple[re.Pattern, Callable[[str], bool]]] = {
    "email": (EMAIL, lambda text: True),
    "card": (CARD, _is_card),
    "phone": (PHONE, _is_phone),
}


def _patterns(config: dict) -> list[tuple[str, re.Pattern, Callable[[str], bool]]]:
    chosen = set(config.get("builtin", BUILTIN_ORDER))
    patterns = [(name, *BUILTINS[name]) for name in BUILTIN_ORDER if name in chosen]
    for item in config.get("patterns", []):
        try:
            patterns.append((item["name"], re.compile(item["regex"]), lambda text: True))
        except re.error as exc:
            raise StepError(f"redact pattern {item['name']!r} is not a valid regex: {exc}") from None
    return patterns


def redact_text(text: str, patterns, counts: dict[str, int]) -> str:
    """Mask every match in ``text``, adding to ``counts`` per pattern name."""
    for name, pattern, check in patterns:

        def replace(match: re.Match, name=name, check=check) -> str:
            if not check(match.group(0)):
                return match.group(0)
            counts[name] = counts.get(name, 0) + 1
            return f"[REDACTED:{name}]"

        text = pattern.sub(replace, text)
    return text


def _redact_value(value: object, patterns, counts: dict[str, int]) -> object:
    # A chosen field may hold an object or a list: every string inside it is masked.
    if isinstance(value, str):
        return redact_text(value, patterns, counts)
    if isinstance(value, list):
        return [_redact_value(item, patterns, counts) for item in value]
    if isinstance(value, dict):
        return {key: _redact_value(item, patterns, counts) for key, item in value.items()}
    return value


def execute(document: dict, ctx: StepContext) -> StepResult:
    config = ctx.step["config"]
    patterns = _patterns(config)
    if "fields" in config:
        fields = list(config["fields"])
    else:
        fields = sorted(key for key, value in document.items() if isinstance(value, str) and not key.startswith("_"))
    output = json_copy(document)
    redactions = json_copy(output.get("_redactions") or {})
    for field in fields:
        value = get_path(output, field)
        if value is MISSING:
            continue  # an optional field the input left out has nothing to mask
        counts: dict[str, int] = {}
        set_path(output, field, _redact_value(value, patterns, counts))
        # A second redact step over the same field adds to the first one's counts.
        merged = dict(redactions.get(field) or {})
        for name, count in counts.items():
            merged[name] = merged.get(name, 0) + count
        redactions[field] = dict(sorted(merged.items()))
    output["_redactions"] = redactions
    return StepResult(output=output)

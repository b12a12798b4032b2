"""redact: mask personal data in chosen text fields, the same way every time.

Built-in patterns are deliberately conservative: a pipeline that masks an order
id or a date loses information a person needs, so a card number must pass the
Luhn check and a phone number must look like one (international, in
parentheses, with a trunk 0, or the North American 3-3-4), never a bare run of
digits or a date.
"""

from collections.abc import Callable

from governance.patterns import DIGIT, WORD, PatternError, linear_compile
from pipelines.steps.base import StepContext, StepError, StepResult, json_copy
from pipelines.steps.documents import MISSING, get_path, set_path

BUILTIN_ORDER = ("email", "card", "phone")  # e-mail first (it holds digits), cards before phones

# Every pattern runs on RE2 (governance/patterns.py), so a scan is linear in the text.
_WORD, _DIGIT = WORD, DIGIT


def _in_context(before: str, hit: str, after: str):
    """A pattern for ``hit`` where the character before it is in ``before`` (or
    the text starts) and what follows is in ``after`` (or the text ends). RE2 has
    no look-around: the context is matched and the hit is group 1; the scan
    resumes at the hit's end, so the context character after one hit may be the
    one before the next, as a look-behind would see it."""
    return linear_compile(rf"(?:\A|{before})({hit})(?:\z|{after})")


EMAIL = linear_compile(rf"[{_WORD}.!#$%&'*+/=?^`{{|}}~-]+@[{_WORD}-]+(?:\.[{_WORD}-]+)+")
# Candidates only: 13 to 19 digits in optional single-space or dash groups, checked by _is_card.
CARD = _in_context(
    before=rf"[^{_WORD}+.-]",
    hit=rf"{_DIGIT}(?:[ -]?{_DIGIT}){{12,18}}",
    after=rf"[^{_WORD}.,-]|[.,](?:\z|[^{_DIGIT}])",
)
# Candidates only: digits in groups split by one space, dot or dash, with an
# optional +country code and (area code); checked by _is_phone.
PHONE = _in_context(
    before=rf"[^{_WORD}+@/.,-]",
    hit=rf"(?:\+{_DIGIT}{{1,3}}[ .-]?)?(?:\({_DIGIT}{{1,5}}\)[ .-]?)?{_DIGIT}{{1,12}}(?:[ .-]{_DIGIT}{{1,12}})*",
    after=rf"[^{_WORD}@/.,-]|[.,-](?:\z|[^{_DIGIT}])",
)
_SEPARATOR = linear_compile(r"[ .-]")
_DATE_SHAPES = {(4, 2, 2), (2, 2, 4), (1, 2, 4), (2, 1, 4), (1, 1, 4), (4, 1, 1), (4, 2, 1), (4, 1, 2)}
# Longer than any card (19 digits, 18 separators) or phone number (15 digits and
# their separators, "+", "()"): a candidate this long is a run of numbers, not one.
_LONGEST_CANDIDATE = 40


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _digits(text: str) -> str:
    return "".join(char for char in text if char.isdecimal())


def _is_card(text: str) -> bool:
    digits = _digits(text)
    # Issued card numbers start with 2 to 6; the rest are ids that happen to pass Luhn.
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and _luhn(digits)


def _is_phone(text: str) -> bool:
    if len(text) > _LONGEST_CANDIDATE:
        return False
    digits = _digits(text)
    if not 7 <= len(digits) <= 15:
        return False
    if text.startswith("+") or "(" in text:
        return True
    groups = _SEPARATOR.split(text)
    if len(groups) == 1:
        return False  # a bare run of digits is far more often an id than a phone number
    if tuple(len(g) for g in groups) in _DATE_SHAPES:
        return False
    if groups[0].startswith("0") and 2 <= len(groups[0]) <= 5:
        return True  # national format with a trunk prefix: 020 7946 0958, 06 12 34 56 78
    shape = [len(g) for g in groups]
    return shape == [3, 3, 4] or (shape == [1, 3, 3, 4] and groups[0] == "1")


# name -> (candidate pattern, check of a candidate, whether the hit is group 1 of a context pattern)
BUILTINS: dict[str, tuple[object, Callable[[str], bool], bool]] = {
    "email": (EMAIL, lambda text: True, False),
    "card": (CARD, _is_card, True),
    "phone": (PHONE, _is_phone, True),
}


def _patterns(config: dict) -> list[tuple[str, object, Callable[[str], bool], bool]]:
    chosen = set(config.get("builtin", BUILTIN_ORDER))
    patterns = [(name, *BUILTINS[name]) for name in BUILTIN_ORDER if name in chosen]
    for item in config.get("patterns", []):
        try:
            patterns.append((item["name"], linear_compile(item["regex"]), lambda text: True, False))
        except PatternError as exc:
            # Saved configs are checked (validate_step_config); a release cut before that check was not.
            raise StepError(f"redact pattern {item['name']!r} is not a valid regex for RE2: {exc}") from None
    return patterns


def _hits(pattern, data: bytes, in_context: bool):
    """(start, end) of each match in ``data``, left to right, without overlaps.
    The scan runs on the UTF-8 bytes: RE2 matches them in one pass, where a str
    would be encoded again (and its offsets decoded) for every match."""
    if not in_context:
        for match in pattern.finditer(data):
            if match.end() > match.start():  # an empty match masks nothing
                yield match.span()
        return
    position = 0
    while (match := pattern.search(data, position)) is not None:
        yield match.span(1)
        position = match.end(1)


def redact_text(text: str, patterns, counts: dict[str, int]) -> str:
    """Mask every match in ``text``, adding to ``counts`` per pattern name."""
    for name, pattern, check, in_context in patterns:
        data = text.encode()
        pieces: list[bytes] = []
        end = 0
        for start, stop in _hits(pattern, data, in_context):
            if not check(data[start:stop].decode()):
                continue
            counts[name] = counts.get(name, 0) + 1
            pieces += [data[end:start], f"[REDACTED:{name}]".encode()]
            end = stop
        if pieces:
            text = b"".join([*pieces, data[end:]]).decode()
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

"""One line of words for an event's payload, for the auditor's desk and the
PDF report: the fields a reader scans for first, hashes shortened, nested
values counted rather than printed. The full canonical JSON stays one click
(or the JSONL export) away; this line is never hashed or exported as proof.

Standard library only, like the rest of the chain's helpers.
"""

import json
import re

# Fields that say the most about an event, shown first in this order; the rest follow by name.
LEADING = (
    "object", "reason", "permission", "user", "group", "status", "release", "environment", "decision",
    "error", "format", "filter", "rows",
)  # fmt: skip
HEX_DIGEST = re.compile(r"^[0-9a-f]{40,}$")
TEXT_LIMIT = 48  # characters of one string value
LINE_LIMIT = 200  # characters of the whole line


def payload_summary(payload_text: str, *, redacted: bool = False, limit: int = LINE_LIMIT) -> str:
    """``reason: retention · seq: 5`` for ``{"reason":"retention","seq":5}``.

    Never raises: a payload that is not a JSON object is shown as a value."""
    if redacted:
        return "(redacted)"
    try:
        payload = json.loads(payload_text)
    except (TypeError, ValueError):
        return _clip(str(payload_text), limit)
    if not isinstance(payload, dict):
        return _clip(_value(payload), limit)
    if not payload:
        return "(no details)"
    keys = [key for key in LEADING if key in payload] + sorted(key for key in payload if key not in LEADING)
    keys = [key for key in keys if payload[key] not in ("", None, [], {})]  # empty fields say nothing
    if not keys:
        return "(no details)"
    return _clip(" · ".join(f"{key.replace('_', ' ')}: {_value(payload[key], key)}" for key in keys), limit)


def _value(value, key: str = "") -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        if HEX_DIGEST.match(value):
            return value[:12] + "…"
        return _clip(" ".join(value.split()) or '""', TEXT_LIMIT)
    if isinstance(value, dict):
        if not value:
            return "none"
        if key == "changes" or len(value) > 3:
            return ", ".join(sorted(value))[:TEXT_LIMIT]  # which fields, not their values
        return "{" + ", ".join(f"{k}: {_value(v, k)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        if value and len(value) <= 4 and all(isinstance(item, str | int | float) for item in value):
            return ", ".join(_value(item) for item in value)
        return f"{len(value)} item{'' if len(value) == 1 else 's'}"
    return str(value)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"

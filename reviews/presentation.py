"""How the reviewer app shows a run's documents: as fields a person reads,
never as escaped JSON. Pure functions of the values (no database), so that the
task page, the queue and the decision history show a value the same way.

A value becomes a tree of ``Field`` nodes: text as paragraphs, labels and
confidences as chips, numbers and flags as they are, objects as a definition
list and lists as items. ``word_diff`` shows an edit word by word."""

import difflib
import json
import re
from dataclasses import dataclass, field

from pipelines.steps.documents import MISSING, get_path

# Keys whose short text is a category to glance at (a chip), not prose to read.
CHIP_KEYS = frozenset({"label", "labels", "category", "categories", "tag", "tags", "intent", "sentiment", "status"})
CHIP_MAX = 40  # longer text is read as prose, whatever its key
MAX_DEPTH = 8  # deeper values are shown as JSON: a page stays readable


@dataclass
class Field:
    """One value to show. ``kind`` picks its look in reviews/_value.html:
    text, chip, confidence, number, flag, empty, object, list or json."""

    key: str
    kind: str
    value: object = None
    children: list["Field"] = field(default_factory=list)

    @property
    def percent(self) -> str:
        return f"{self.value * 100:.0f}%" if self.kind == "confidence" else ""

    @property
    def level(self) -> str:
        """A confidence's band, for its colour: low, mid or high."""
        if self.kind != "confidence":
            return ""
        return "low" if self.value < 0.5 else "mid" if self.value < 0.8 else "high"


def _is_confidence(key: str, value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and 0 <= value <= 1
        and ("confidence" in key.lower() or key.lower() in ("score", "probability"))
    )


def present(value: object, key: str = "", depth: int = 0) -> Field:
    """``value`` as a tree of fields to show; ``key`` is its name in its parent."""
    if depth > MAX_DEPTH:
        return Field(key, "json", json.dumps(value, indent=2, ensure_ascii=False))
    if value is None:
        return Field(key, "empty")
    if isinstance(value, bool):
        return Field(key, "flag", value)
    if _is_confidence(key, value):
        return Field(key, "confidence", float(value))
    if isinstance(value, (int, float)):
        return Field(key, "number", value)
    if isinstance(value, str):
        chip = key.lower() in CHIP_KEYS and len(value) <= CHIP_MAX and "\n" not in value
        return Field(key, "chip" if chip else "text", value)
    if isinstance(value, dict):
        return Field(key, "object", children=[present(v, str(k), depth + 1) for k, v in value.items()])
    if isinstance(value, list):
        items = [present(item, key, depth + 1) for item in value]
        # A list of short words under a category key (labels, tags) reads best as chips.
        if items and all(item.kind == "chip" for item in items):
            return Field(key, "chips", children=items)
        return Field(key, "list", children=items)
    return Field(key, "json", json.dumps(value, ensure_ascii=False))


def title_and_excerpt(output: object, title_field: str, *, length: int = 160) -> tuple[str, str]:
    """A queue row's title (the pipeline's title field of the output under
    review) and an excerpt (its longest other text field), both one line."""
    if not isinstance(output, dict):
        return "", ""
    title = get_path(output, title_field) if title_field else MISSING
    title = _one_line(title) if isinstance(title, str) else ""
    texts = [
        value
        for key, value in output.items()
        if isinstance(value, str) and key != title_field and len(value) > CHIP_MAX and not value.startswith("{")
    ]
    if not texts:
        texts = [value for key, value in output.items() if isinstance(value, str) and key != title_field]
    excerpt = max(texts, key=len) if texts else ""
    return _clipped(title, 120), _clipped(_one_line(excerpt), length)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _clipped(text: str, length: int) -> str:
    """``text`` in at most ``length`` characters, an ellipsis marking a cut."""
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"


# A word with the space after it: a diff then never splits on a lone space.
_WORDS = re.compile(r"^\s+|\S+\s*")


@dataclass(frozen=True)
class Change:
    """A field an edit changed: its key and the diff's segments as (op, text),
    op being "same", "removed" or "added"."""

    key: str
    segments: list[tuple[str, str]]


def word_diff(original: str, edited: str) -> list[tuple[str, str]]:
    """The edit of one text word by word, as (op, text) segments in reading order."""
    before, after = _WORDS.findall(original), _WORDS.findall(edited)
    segments: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        if op == "equal":
            segments.append(("same", "".join(before[a1:a2])))
            continue
        if a2 > a1:
            segments.append(("removed", "".join(before[a1:a2])))
        if b2 > b1:
            segments.append(("added", "".join(after[b1:b2])))
    return segments


def output_changes(original: object, edited: object) -> list[Change]:
    """Each top-level field an edit changed, with its word-level diff (a value
    that is not text is compared as its JSON)."""
    if not isinstance(original, dict) or not isinstance(edited, dict):
        return [Change("", word_diff(_text(original), _text(edited)))]
    changes = []
    for key in [*original, *(k for k in edited if k not in original)]:
        was, now = original.get(key), edited.get(key)
        if was != now:
            changes.append(Change(key, word_diff(_text(was), _text(now))))
    return changes


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)

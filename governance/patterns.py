"""Regular expressions over text that anyone can send, in linear time.

Python's ``re`` backtracks: a pattern such as ``(a+)+$`` takes seconds on 25
characters, and even a plain one scanned from every position of a long text
costs time quadratic in its length. Every pattern Keel runs over run data (the
redact step's built-in and custom patterns, JSON Schema ``pattern`` and
``patternProperties``, policy rule fields, the parse step's shapes) goes through
RE2 instead, which matches in time linear in the text whatever the pattern.

RE2 has no backreferences and no look-around, and its ``\\w``, ``\\d`` and
``\\b`` are ASCII (``\\pL``, ``\\p{Nd}`` for Unicode); a pattern it cannot compile
is refused when it is saved, naming the pattern.
"""

import functools

import re2

# Python's \w, \d and \s on text, as RE2 class contents ("[{WORD}-]"): RE2's own are ASCII.
WORD = r"\p{L}\p{N}_"
DIGIT = r"\p{Nd}"
SPACE = r"\s\v\x1c-\x1f\x85\p{Z}"

# RE2 builds its automata lazily within this much memory per pattern; a pattern
# that needs more fails to compile (and is refused on save) instead of growing.
MAX_MEMORY = 8 << 20


class PatternError(ValueError):
    """The pattern is not one RE2 accepts (bad syntax, look-around, backreferences, too big)."""


@functools.lru_cache(maxsize=512)
def linear_compile(pattern: str):
    """The RE2 pattern for ``pattern``; PatternError when RE2 cannot compile it."""
    options = re2.Options()
    options.max_mem = MAX_MEMORY
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else ""
        if isinstance(reason, bytes):  # the binding passes RE2's message on as bytes
            reason = reason.decode("utf-8", "replace")
        raise PatternError(str(reason) or "not a pattern RE2 accepts") from None


def pattern_problem(pattern: object) -> str | None:
    """Why ``pattern`` cannot run as a linear-time regex, or None when it can."""
    if not isinstance(pattern, str):
        return "a pattern must be text"
    try:
        linear_compile(pattern)
    except PatternError as exc:
        return f"RE2 cannot compile it ({exc}); look-around and backreferences are not supported"
    return None

"""Run inputs, canonicalised once on arrival.

Every way in (``run_start``, the API's input field, a schedule's fixed input)
passes the input through ``input_canonical`` before anything is stored or
hashed, so what is stored is exactly what was hashed, on both databases. The
rule, I-JSON's (RFC 7493):

- A number whose value is a whole number beyond ±(2**53 − 1) is refused,
  however it is written (``9007199254740993``, ``1e21``, ``1.5e300``): a
  double cannot hold every such integer, readers disagree on them, and
  PostgreSQL's jsonb gives ``1e21`` back as ``1000000000000000000000``.
  Send such a value as a string.
- A number that overflows a double (``1e400``), NaN and Infinity are refused.
- A string or key holding a lone surrogate (not Unicode text) or a NUL
  character (which jsonb cannot store) is refused.
- Everything else is kept, each number in its canonical JSON form (``1.0``
  becomes ``1``, ``1.50`` becomes ``1.5``): the value stored is the one
  canonical JSON reads back, and jsonb gives back the same numbers.

A refusal is a ``ValidationError`` on ``input`` naming the path
(``input.order.amount: ...``), which the API answers with a 400 naming
``input.order.amount``.
"""

import json
import math

from django.core.exceptions import ValidationError

from audit.canonical import MAX_SAFE_INTEGER, canonical_text

_SURROGATES = range(0xD800, 0xE000)


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character, which cannot be stored"
    if any(ord(char) in _SURROGATES for char in text):
        return "contains a lone surrogate (\\ud800-\\udfff), which is not Unicode text"
    return None


def _number_problem(value: int | float) -> str | None:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return "is not a finite number (NaN, Infinity, or out of range for a double, as 1e400)"
        if not value.is_integer():
            return None
    if abs(value) > MAX_SAFE_INTEGER:
        return (
            f"is the whole number {value!r}, beyond ±{MAX_SAFE_INTEGER} (2^53 − 1), which not every "
            "JSON reader holds exactly: send it as a string"
        )
    return None


def input_problems(value, path: str = "input") -> list[str]:
    """Every problem ``input_canonical`` refuses, each as ``path: why``."""
    problems: list[str] = []
    stack = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, str):
            why = _text_problem(item)
        elif isinstance(item, (int, float)):
            why = _number_problem(item)
        elif isinstance(item, dict):
            why = None
            for key, child in item.items():
                if not isinstance(key, str):
                    problems.append(f"{where}: a key is not a string ({key!r})")
                    continue
                key_why = _text_problem(key)
                if key_why:
                    problems.append(f"{where}: a key {key_why}")
                    continue
                stack.append((f"{where}.{key}", child))
        elif isinstance(item, (list, tuple)):
            why = None
            stack.extend((f"{where}.{index}", child) for index, child in enumerate(item))
        else:
            why = f"is not JSON ({type(item).__name__})"
        if why:
            problems.append(f"{where}: {why}")
    return sorted(problems)


def input_canonical(value, *, field: str = "input") -> dict:
    """The input as Keel stores and hashes it (see the module's rule), or a
    ValidationError on ``field`` naming each refused path."""
    problems = input_problems(value)
    if problems:
        raise ValidationError({field: problems})
    return json.loads(canonical_text(value))

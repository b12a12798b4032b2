"""Canonical JSON as RFC 8785 (JCS) describes it, with the standard library only.

Keys are sorted by their UTF-16 code units, there is no insignificant
whitespace, strings are UTF-8 with only the mandatory escapes, and numbers are
written as ECMAScript writes a double. Integers are I-JSON's (RFC 7493): within
±(2**53 − 1), the range a double holds exactly, so every reader of the text
finds the same number. A larger integer is refused (``UnsafeNumber``): Keel
records such values as decimal strings (``json_safe``).

The offline verifier (``python -m audit.verify``) imports this module, so it
must never import Django or anything outside the standard library.
"""

import json
import math

_encode_string = json.encoder.encode_basestring  # escapes ", \\ and controls only

MAX_SAFE_INTEGER = 2**53 - 1


class UnsafeNumber(ValueError):
    """An integer outside ±(2**53 − 1), or a NaN or infinite float."""


def _number(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        raise UnsafeNumber("canonical JSON has no NaN or Infinity")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    text = repr(abs(value))  # the shortest digits that round-trip, as ECMAScript picks
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    stripped = digits.rstrip("0")
    k = len(stripped)
    # value = stripped × 10^(n − k), with k as small as possible (ECMA-262 Number::toString)
    n = k + int(exponent or 0) - len(fraction) + (len(digits) - k)
    if k <= n <= 21:
        out = stripped + "0" * (n - k)
    elif 0 < n <= 21:
        out = stripped[:n] + "." + stripped[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + stripped
    else:
        exp = n - 1
        exp_text = ("+" if exp >= 0 else "-") + str(abs(exp))
        out = stripped[0] + ("." + stripped[1:] if k > 1 else "") + "e" + exp_text
    return sign + out


def _write(value, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_string(value))
    elif isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise UnsafeNumber(f"the integer {value} is outside ±(2**53 − 1); record it as a string")
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, dict):
        out.append("{")
        for index, key in enumerate(sorted(value, key=_utf16_key)):
            if not isinstance(key, str):
                raise TypeError(f"canonical JSON object keys must be strings, not {key!r}")
            if index:
                out.append(",")
            out.append(_encode_string(key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} is not JSON: {value!r}")


def _utf16_key(key: str) -> bytes:
    if not isinstance(key, str):
        raise TypeError(f"canonical JSON object keys must be strings, not {key!r}")
    return key.encode("utf-16-be", "surrogatepass")


def canonical_text(value) -> str:
    out: list[str] = []
    _write(value, out)
    return "".join(out)


def canonical_bytes(value) -> bytes:
    return canonical_text(value).encode("utf-8")


def json_safe(value):
    """A copy of ``value`` that canonical JSON accepts: integers outside
    ±(2**53 − 1) become their decimal strings. For values Keel records but did
    not take from a user (a model's parsed reply, a seed, a configuration's
    extra parameters), where refusing would lose the record."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return value
    if isinstance(value, int):
        return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value

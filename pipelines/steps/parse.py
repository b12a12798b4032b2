"""parse: turn a model's text into fields the gate and later steps can read.

``label_confidence`` reads "label: <x>" and "confidence: <0..1>" on two lines;
``json`` reads one JSON object, bare or in a ```json fence. Anything else
fails the step: a guessed label must never pass a gate as if it were read.
"""

import json

from audit.canonical import json_safe
from governance.patterns import SPACE, linear_compile
from pipelines.steps.base import StepContext, StepError, StepResult, json_copy
from pipelines.steps.documents import MISSING, get_path

# RE2 (linear in the model's text, however long or odd it is); _S is Python's \s.
_S = f"[{SPACE}]"
_LABEL_CONFIDENCE = linear_compile(
    rf"(?i)\A{_S}*label{_S}*:{_S}*(?P<label>[^\n]*?){_S}*\n{_S}*confidence{_S}*:{_S}*(?P<confidence>[0-9]*\.?[0-9]+){_S}*\z"
)
_FENCE = linear_compile(rf"(?is)\A{_S}*```(?:json)?{_S}*\n(?P<body>.*)\n{_S}*```{_S}*\z")


def _fail(reason: str) -> StepError:
    return StepError(f"could not parse model output: {reason}")


def _label(value: object, labels: list[str] | None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(f"the label must be non-empty text, not {value!r}")
    value = value.strip()
    if labels is None:
        return value
    # The model may answer "Refund" for "refund": keep the configured spelling.
    for known in labels:
        if known.casefold() == value.casefold():
            return known
    raise _fail(f"label {value!r} is not one of {', '.join(labels)}")


def _confidence(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _fail(f"the confidence must be a number from 0 to 1, not {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise _fail(f"the confidence must be a number from 0 to 1, not {value!r}") from None
    if not 0 <= number <= 1:
        raise _fail(f"the confidence must be from 0 to 1, not {value}")
    return number


def _parse_label_confidence(text: str, labels: list[str] | None) -> dict:
    match = _LABEL_CONFIDENCE.match(text)
    if not match:
        raise _fail(f"expected 'label: <label>' and 'confidence: <0..1>' on two lines, got {text[:200]!r}")
    return {"label": _label(match["label"], labels), "confidence": _confidence(match["confidence"])}


def _parse_json(text: str, labels: list[str] | None) -> dict:
    fenced = _FENCE.match(text)
    try:
        # A model may write integers no double holds: kept as their strings (I-JSON).
        value = json_safe(json.loads(fenced["body"] if fenced else text))
    except json.JSONDecodeError as exc:
        raise _fail(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(value, dict):
        raise _fail(f"expected a JSON object, got {type(value).__name__}")
    parsed: dict = {"fields": value}
    if "label" in value:
        parsed["label"] = _label(value["label"], labels)
    if "confidence" in value:
        parsed["confidence"] = _confidence(value["confidence"])
    return parsed


def execute(document: dict, ctx: StepContext) -> StepResult:
    config = ctx.step["config"]
    field = config.get("input_field", "output")
    text = get_path(document, field)
    if text is MISSING:
        raise _fail(f"the document has no field {field!r}")
    if not isinstance(text, str):
        raise _fail(f"field {field!r} must be text, not {type(text).__name__}")
    labels = config.get("labels")
    if config["format"] == "label_confidence":
        parsed = _parse_label_confidence(text, labels)
    else:
        parsed = _parse_json(text, labels)
    output = json_copy(document)
    output.update(parsed)
    output["parse_uncertain"] = False
    return StepResult(output=output)

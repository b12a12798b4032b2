"""ingest: take the run input as the first document and fingerprint it."""

import hashlib

from audit.canonical import canonical_bytes
from pipelines.steps.base import StepContext, StepError, StepResult, json_copy
from pipelines.steps.documents import MISSING, get_path


def execute(document: dict, ctx: StepContext) -> StepResult:
    text_field = ctx.step["config"].get("text_field")
    if text_field:
        # The field later steps read as "the text": a run without it cannot mean anything.
        value = get_path(document, text_field)
        if value is MISSING:
            raise StepError(f"text field {text_field!r} is missing from the input")
        if not isinstance(value, str):
            raise StepError(f"text field {text_field!r} must be a string, not {type(value).__name__}")
    try:
        digest = hashlib.sha256(canonical_bytes(document)).hexdigest()
    except (TypeError, ValueError) as exc:
        raise StepError(f"the input is not plain JSON: {exc}") from None
    output = json_copy(document)
    output["_ingest"] = {"sha256": digest, "source": ctx.source or "unknown"}
    return StepResult(output=output)

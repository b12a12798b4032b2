"""transform: add fields rendered from sandboxed Jinja2 templates over the document."""

from pipelines.steps.base import StepContext, StepError, StepResult, json_copy
from pipelines.steps.documents import set_path
from pipelines.steps.prompts import render_prompt


def execute(document: dict, ctx: StepContext) -> StepResult:
    mapping: dict[str, str] = ctx.step["config"]["mapping"]
    output = json_copy(document)
    # Every template sees the input, never a field another template just wrote,
    # so the result does not depend on the order of the mapping; writing in
    # sorted order makes clashes ("a" and "a.b") fail the same way every time.
    for field in sorted(mapping):
        try:
            value = render_prompt(mapping[field], document)
        except Exception as exc:  # a template is authored code: any failure in it is the template's
            raise StepError(f"transform of field {field!r} failed: {type(exc).__name__}: {exc}") from None
        try:
            set_path(output, field, value)
        except ValueError as exc:
            raise StepError(f"transform cannot write field {field!r}: {exc}") from None
    return StepResult(output=output)

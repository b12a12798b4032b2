"""validate: check the document against a JSON Schema (the step's own, else the pipeline's input schema)."""

import functools
import json

from jsonschema import FormatChecker
from jsonschema.exceptions import SchemaError

from governance.patterns import SPACE, linear_compile
from pipelines.steps import SchemaValidator
from pipelines.steps.base import StepContext, StepError, StepResult, json_copy

# jsonschema's own "email" check only looks for an "@"; an address that a reply
# would be sent to needs at least something on both sides and a dotted domain.
_EMAIL = linear_compile(rf"^[^@{SPACE}]+@[^@{SPACE}]+\.[^@{SPACE}.]+$")
_formats = FormatChecker(formats=())


@_formats.checks("email")
def _is_email(instance: object) -> bool:
    return not isinstance(instance, str) or bool(_EMAIL.match(instance))


@functools.lru_cache(maxsize=256)
def _validator(schema_text: str) -> SchemaValidator:
    # Checking a schema and building its validator costs far more than using it,
    # and a release's schemas never change: one validator per distinct schema.
    schema = json.loads(schema_text)
    SchemaValidator.check_schema(schema)
    return SchemaValidator(schema, format_checker=_formats)


def schema_validator(schema: dict) -> SchemaValidator:
    """The (cached) validator for ``schema``; SchemaError when it is not a valid JSON Schema."""
    return _validator(json.dumps(schema, sort_keys=True, separators=(",", ":")))


def document_problems(schema: dict, document: object) -> list[str]:
    """Every way ``document`` breaks ``schema``, as sorted "<json path>: <message>" lines."""
    validator = schema_validator(schema)
    errors = sorted(validator.iter_errors(document), key=_position)
    return [f"{error.json_path}: {error.message}" for error in errors]


def _position(error) -> tuple:
    # Outer problems first, then by path (list items by number, not as text), then by message.
    path = [(0, part, "") if isinstance(part, int) else (1, 0, part) for part in error.absolute_path]
    return path, error.message


def execute(document: dict, ctx: StepContext) -> StepResult:
    schema = ctx.step["config"].get("schema") or ctx.input_schema or {}
    try:
        problems = document_problems(schema, document)
    except SchemaError as exc:
        raise StepError(f"the schema is not a valid JSON Schema: {exc.message}") from None
    if problems:
        raise StepError("the document does not match the schema: " + "; ".join(problems))
    return StepResult(output=json_copy(document))

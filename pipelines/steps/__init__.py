"""Step kinds and the shape of each kind's configuration.

Each kind's config is a JSON object checked against its JSON Schema when a step
is saved, so a step that cannot run is refused before it is ever released.
"""

import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

SLUG = r"^[-a-zA-Z0-9_]+$"
FIELD_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$"


@dataclass(frozen=True)
class StepKind:
    name: str
    label: str
    config_schema: dict
    needs_prompt: bool = False
    needs_model: bool = False


def _object(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


KINDS: dict[str, StepKind] = {
    kind.name: kind
    for kind in [
        StepKind("ingest", "Ingest", _object({"text_field": {"type": "string", "pattern": FIELD_NAME}})),
        StepKind("validate", "Validate (JSON Schema)", _object({"schema": {"type": "object"}})),
        StepKind(
            "transform",
            "Transform",
            _object(
                {"mapping": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}}},
                required=("mapping",),
            ),
        ),
        StepKind(
            "redact",
            "Redact PII",
            _object(
                {
                    "fields": {"type": "array", "items": {"type": "string", "pattern": FIELD_NAME}},
                    "builtin": {
                        "type": "array",
                        "items": {"enum": ["email", "phone", "card"]},
                        "uniqueItems": True,
                    },
                    "patterns": {
                        "type": "array",
                        "items": _object(
                            {"name": {"type": "string", "minLength": 1}, "regex": {"type": "string", "minLength": 1}},
                            required=("name", "regex"),
                        ),
                    },
                }
            ),
        ),
        StepKind(
            "model",
            "Model call",
            _object(
                {
                    "output_field": {"type": "string", "pattern": FIELD_NAME},
                    # Constant prompt variables (e.g. the labels to choose from); the document's fields win.
                    "variables": {"type": "object"},
                }
            ),
            needs_prompt=True,
            needs_model=True,
        ),
        StepKind(
            "parse",
            "Parse model output",
            _object(
                {
                    "format": {"enum": ["label_confidence", "json"]},
                    "input_field": {"type": "string", "pattern": FIELD_NAME},  # default "output"
                    "labels": {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True},
                },
                required=("format",),
            ),
        ),
        StepKind("gate", "Approval gate", _object({})),
        StepKind(
            "deliver",
            "Deliver",
            {
                **_object(
                    {
                        "channel": {"enum": ["webhook", "stored"]},
                        "url": {"type": "string", "pattern": "^https?://"},
                        # The slug of the workspace credential that signs the body.
                        "credential": {"type": "string", "pattern": SLUG, "maxLength": 100},
                        # "pdf": a PDF report of the output with its provenance (pipelines/reports.py).
                        "format": {"enum": ["json", "pdf"]},
                        "title": {"type": "string", "minLength": 1, "maxLength": 200},
                    },
                    required=("channel",),
                ),
                "if": {"properties": {"channel": {"const": "webhook"}}},
                "then": {"required": ["url", "credential"]},
            },
        ),
    ]
}

KIND_CHOICES = [(kind.name, kind.label) for kind in KINDS.values()]


def _error_path(error) -> str:
    path = ".".join(str(part) for part in error.absolute_path)
    return f"config.{path}" if path else "config"


def validate_step_config(kind: str, config: object) -> None:
    """Raise a ValidationError naming the config key and the problem."""
    if kind not in KINDS:
        raise ValidationError({"kind": f"Unknown step kind {kind!r}."})
    validator = Draft202012Validator(KINDS[kind].config_schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ValidationError({"config": [f"{_error_path(e)}: {e.message}" for e in errors]})
    if kind == "validate" and "schema" in config:
        validate_json_schema(config["schema"], field="config")
    if kind == "deliver" and "title" in config and config.get("format") != "pdf":
        raise ValidationError({"config": 'config.title: a title is for PDF reports ("format": "pdf").'})
    if kind == "redact":
        for item in config.get("patterns", []):
            try:
                re.compile(item["regex"])
            except re.error as exc:
                raise ValidationError(
                    {"config": f"config.patterns: {item['name']!r} is not a valid regex: {exc}"}
                ) from None


def validate_json_schema(schema: object, *, field: str) -> None:
    if not isinstance(schema, dict):
        raise ValidationError({field: "A JSON Schema must be an object."})
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = ".".join(str(p) for p in exc.absolute_path)
        raise ValidationError({field: f"Invalid JSON Schema{' at ' + where if where else ''}: {exc.message}"}) from None


def step_does_io(step: dict) -> bool:
    """Whether a released step reaches outside the process: a model on a
    provider other than the built-in one, or a delivery to anything but the
    run's own stored result. The engine commits before such a step."""
    if step["kind"] == "model":
        return (step.get("model") or {}).get("provider") != "builtin"
    if step["kind"] == "deliver":
        return step["config"].get("channel") != "stored"
    return False


def execute_step(kind: str, document: dict, ctx):
    """Run one step: ``pipelines.steps.<kind>.execute(document, ctx)``, imported
    only when a run needs it (the model and deliver kinds pull in their providers)."""
    import importlib

    from pipelines.steps.base import StepError

    if kind not in KINDS:
        raise StepError(f"Unknown step kind {kind!r}.")
    return importlib.import_module(f"pipelines.steps.{kind}").execute(document, ctx)

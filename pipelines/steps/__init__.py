"""Step kinds and the shape of each kind's configuration.

Each kind's config is a JSON object checked against its JSON Schema when a step
is saved, so a step that cannot run is refused before it is ever released.
"""

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError
from jsonschema.exceptions import ValidationError as SchemaValidationError

from governance.patterns import PatternError, linear_compile, pattern_problem
from pipelines.steps.base import StepError
from pipelines.steps.prompts import parse_template

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
                        # "pdf": a PDF report of the output with its provenance (pipelines/delivery/reports.py).
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
    if kind == "transform":
        for field, body in config["mapping"].items():
            try:
                parse_template(body, field="config")
            except ValidationError as exc:
                raise ValidationError(
                    {"config": [f"config.mapping.{field}: {m}" for m in exc.message_dict["config"]]}
                ) from None
    if kind == "redact":
        problems = [
            f"config.patterns: {item['name']!r} ({item['regex']!r}) is not a valid regex for RE2: {problem}"
            for item in config.get("patterns", [])
            if (problem := pattern_problem(item["regex"]))
        ]
        if problems:
            raise ValidationError({"config": problems})


def validate_json_schema(schema: object, *, field: str) -> None:
    if not isinstance(schema, dict):
        raise ValidationError({field: "A JSON Schema must be an object."})
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = ".".join(str(p) for p in exc.absolute_path)
        raise ValidationError({field: f"Invalid JSON Schema{' at ' + where if where else ''}: {exc.message}"}) from None
    problems = [f"Invalid JSON Schema at {where}: {problem}" for where, problem in _schema_pattern_problems(schema, "")]
    if _mixes_pattern_and_unevaluated_properties(schema):
        problems.append("patternProperties cannot be combined with unevaluatedProperties in one schema")
    if problems:
        raise ValidationError({field: problems})


# Keywords whose values are data, not schemas: a "pattern" key inside them is not a pattern.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})


def _keywords(schema: object):
    if isinstance(schema, list):
        for item in schema:
            yield from _keywords(item)
    elif isinstance(schema, dict):
        for key, value in schema.items():
            if key not in _DATA_KEYWORDS:
                yield key
                yield from _keywords(value)


def _mixes_pattern_and_unevaluated_properties(schema: object) -> bool:
    used = set(_keywords(schema))
    return "patternProperties" in used and "unevaluatedProperties" in used


def _schema_pattern_problems(schema: object, where: str):
    """(path, problem) for every regex in ``schema`` that RE2 cannot run."""
    if isinstance(schema, list):
        for index, item in enumerate(schema):
            yield from _schema_pattern_problems(item, f"{where}.{index}" if where else str(index))
        return
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        path = f"{where}.{key}" if where else key
        if key in _DATA_KEYWORDS:
            continue
        if key == "pattern" and isinstance(value, str) and (problem := pattern_problem(value)):
            yield path, f"pattern {value!r}: {problem}"
        if key == "patternProperties" and isinstance(value, dict):
            for pattern in value:
                if problem := pattern_problem(pattern):
                    yield path, f"pattern {pattern!r}: {problem}"
        yield from _schema_pattern_problems(value, path)


def _clipped(text: str, limit: int = 200) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _search(pattern: str, text: str) -> bool:
    """Whether RE2 finds ``pattern`` in ``text``; a pattern it cannot compile
    (saved before patterns were checked) raises PatternError."""
    return linear_compile(pattern).search(text) is not None


def _pattern_keyword(validator, pattern, instance, schema):
    if not validator.is_type(instance, "string"):
        return
    try:
        if not _search(pattern, instance):
            yield SchemaValidationError(f"{_clipped(instance)} does not match {pattern!r}")
    except PatternError as exc:
        yield SchemaValidationError(f"the schema's pattern {pattern!r} cannot run on RE2: {exc}")


def _pattern_properties_keyword(validator, patterns, instance, schema):
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        try:
            linear_compile(pattern)
        except PatternError as exc:
            yield SchemaValidationError(f"the schema's pattern {pattern!r} cannot run on RE2: {exc}")
            continue
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties_keyword(validator, additional, instance, schema):
    # jsonschema's own, with the patternProperties test on RE2.
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = [p for p in schema.get("patternProperties", {}) if pattern_problem(p) is None]
    extras = [key for key in instance if key not in properties and not any(_search(p, key) for p in patterns)]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        if "patternProperties" in schema:
            verb = "does" if len(extras) == 1 else "do"
            joined = ", ".join(repr(each) for each in sorted(extras))
            listed = ", ".join(repr(each) for each in sorted(schema["patternProperties"]))
            yield SchemaValidationError(f"{joined} {verb} not match any of the regexes: {listed}")
        else:
            verb = "was" if len(extras) == 1 else "were"
            joined = ", ".join(repr(extra) for extra in sorted(extras, key=str))
            yield SchemaValidationError(f"Additional properties are not allowed ({joined} {verb} unexpected)")


_unevaluated_properties = Draft202012Validator.VALIDATORS["unevaluatedProperties"]


def _unevaluated_properties_keyword(validator, unevaluated, instance, schema):
    # jsonschema's own matches patternProperties with Python's re on the way:
    # refused beside them (validate_json_schema says so on save).
    if _mixes_pattern_and_unevaluated_properties(validator.schema):
        yield SchemaValidationError("patternProperties cannot be combined with unevaluatedProperties")
        return
    yield from _unevaluated_properties(validator, unevaluated, instance, schema)


# Draft 2020-12 with every regex keyword on RE2, so a schema's pattern runs in
# time linear in the text it checks (governance/patterns.py).
SchemaValidator = validators.extend(
    Draft202012Validator,
    validators={
        "pattern": _pattern_keyword,
        "patternProperties": _pattern_properties_keyword,
        "additionalProperties": _additional_properties_keyword,
        "unevaluatedProperties": _unevaluated_properties_keyword,
    },
)


def step_does_io(step: dict) -> bool:
    """Whether a released step reaches outside the process: a model on a
    provider other than the built-in one, or a delivery to anything but the
    run's own stored result. The engine commits before such a step."""
    if step["kind"] == "model":
        return (step.get("model") or {}).get("provider") != "builtin"
    if step["kind"] == "deliver":
        return step["config"].get("channel") != "stored"
    return False


def json_size(value: object, limit: int) -> int:
    """About how many bytes ``value`` takes as UTF-8 JSON (escapes aside), counted
    only until it passes ``limit``: a step's input is measured before every step,
    so the walk is cheap, has no recursion and stops early."""
    size, pending = 0, [value]
    while pending and size <= limit:
        item = pending.pop()
        if isinstance(item, str):
            size += (len(item) if item.isascii() else len(item.encode())) + 2
        elif isinstance(item, dict):
            size += 2 + 2 * len(item)  # braces; a colon and a comma per member
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            size += 2 + len(item)
            pending.extend(item)
        else:
            size += 8  # a number, true, false or null: a few bytes
    return size


def _input_problem(document: object) -> str | None:
    limit = settings.KEEL_STEP_INPUT_MAX_BYTES
    if json_size(document, limit) > limit:
        return f"is over the limit of {limit:,} bytes as JSON (KEEL_STEP_INPUT_MAX_BYTES)"
    return None


def run_input_check(input: object) -> None:
    """Refuse a run's input that no step could take (a ValidationError naming ``input``)."""
    if problem := _input_problem(input):
        raise ValidationError({"input": f"The input {problem}."})


def execute_step(kind: str, document: dict, ctx):
    """Run one step: ``pipelines.steps.<kind>.execute(document, ctx)``, imported
    only when a run needs it (the model and deliver kinds pull in their providers).
    An input over KEEL_STEP_INPUT_MAX_BYTES fails the step before it starts: an
    earlier step may have grown the run's input past it."""
    import importlib

    if kind not in KINDS:
        raise StepError(f"Unknown step kind {kind!r}.")
    if problem := _input_problem(document):
        raise StepError(f"the step's input {problem}")
    return importlib.import_module(f"pipelines.steps.{kind}").execute(document, ctx)

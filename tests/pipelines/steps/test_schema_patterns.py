"""JSON Schema pattern keywords run on RE2, and a schema whose pattern RE2
cannot run is refused on save, naming the pattern."""

import pytest
from django.core.exceptions import ValidationError
from jsonschema import Draft202012Validator

from pipelines.steps import SchemaValidator, validate_json_schema, validate_step_config
from pipelines.steps.base import StepError
from pipelines.steps.validate import document_problems
from pipelines.steps.validate import execute as validate_execute
from tests import factories

from .helpers import make_ctx

NESTED = "^(a+)+$"


def test_a_nested_quantifier_pattern_answers_on_a_long_adversarial_input():
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": NESTED}}}
    problems = document_problems(schema, {"code": "a" * 100_000 + "!"})
    assert len(problems) == 1 and problems[0].startswith("$.code: 'aaaa") and NESTED in problems[0]
    assert document_problems(schema, {"code": "a" * 100_000}) == []


def test_pattern_properties_and_additional_properties_behave_as_jsonschemas_own():
    schema = {
        "type": "object",
        "properties": {"id": {"type": "integer"}},
        "patternProperties": {"^x-": {"type": "string"}, "(b+)+$": {"type": "integer"}},
        "additionalProperties": False,
    }
    for instance in ({"id": 1, "x-a": "s"}, {"x-a": 3}, {"bbb": "no"}, {"other": 1, "more": 2}, {"id": "1"}, {}):
        ours = sorted(e.message for e in SchemaValidator(schema).iter_errors(instance))
        theirs = sorted(e.message for e in Draft202012Validator(schema).iter_errors(instance))
        assert ours == theirs, instance
    other = {"type": "object", "additionalProperties": {"type": "integer"}, "properties": {"a": {}}}
    errors = sorted(e.message for e in SchemaValidator(other).iter_errors({"a": "s", "b": "t"}))
    assert errors == ["'t' is not of type 'integer'"]


@pytest.mark.parametrize(
    "schema, where",
    [
        ({"type": "string", "pattern": "(?=a)b"}, "pattern"),
        ({"type": "object", "properties": {"z": {"pattern": r"(a)\1"}}}, "properties.z.pattern"),
        ({"type": "object", "patternProperties": {"(?<!x)y": {}}}, "patternProperties"),
        ({"type": "object", "propertyNames": {"pattern": r"\Z"}}, "propertyNames.pattern"),
    ],
)
def test_a_schema_whose_pattern_re2_cannot_run_is_refused_naming_it(schema, where):
    with pytest.raises(ValidationError) as caught:
        validate_json_schema(schema, field="input_schema")
    (message,) = caught.value.message_dict["input_schema"]
    assert f"at {where}: pattern" in message and "RE2 cannot compile it" in message


def test_data_that_looks_like_a_pattern_is_not_checked():
    validate_json_schema({"const": {"pattern": "(?=a)"}, "enum": [{"pattern": "(?=a)"}]}, field="input_schema")


def test_unevaluated_properties_beside_pattern_properties_is_refused():
    schema = {"type": "object", "patternProperties": {"^a": {}}, "unevaluatedProperties": False}
    with pytest.raises(ValidationError, match="cannot be combined with unevaluatedProperties"):
        validate_json_schema(schema, field="input_schema")
    errors = [e.message for e in SchemaValidator(schema).iter_errors({"b": 1})]
    assert errors == ["patternProperties cannot be combined with unevaluatedProperties"]


def test_a_pipelines_input_schema_and_a_validate_steps_schema_are_checked_on_save(acme):
    pipeline = factories.PipelineFactory.build(
        workspace=acme, owner=acme.owner, input_schema={"type": "object", "properties": {"a": {"pattern": "(?=x)"}}}
    )
    with pytest.raises(ValidationError) as caught:
        pipeline.full_clean()
    assert "properties.a.pattern: pattern '(?=x)'" in caught.value.message_dict["input_schema"][0]
    with pytest.raises(ValidationError) as caught:
        validate_step_config("validate", {"schema": {"type": "string", "pattern": "(?<=x)"}})
    assert "pattern '(?<=x)'" in caught.value.message_dict["config"][0]


def test_a_redact_pattern_re2_cannot_run_is_refused_on_save_naming_it():
    config = {"patterns": [{"name": "ok", "regex": "(a+)+$"}, {"name": "behind", "regex": "(?<=a)b"}]}
    with pytest.raises(ValidationError) as caught:
        validate_step_config("redact", config)
    (message,) = caught.value.message_dict["config"]
    assert message.startswith("config.patterns: 'behind' ('(?<=a)b') is not a valid regex for RE2")


def test_a_released_schema_with_a_pattern_re2_cannot_run_fails_the_step_not_the_worker():
    ctx = make_ctx(kind="validate", config={"schema": {"type": "string", "pattern": "(?=a)"}})
    with pytest.raises(StepError, match="cannot run on RE2"):
        validate_execute("anything", ctx)

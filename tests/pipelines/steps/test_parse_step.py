import pytest

from audit.canonical import canonical_bytes
from pipelines.steps.base import StepError
from pipelines.steps.parse import execute

from .helpers import make_ctx

LABELS = ["billing", "refund", "other"]


def parse(document: dict, **config) -> dict:
    return execute(document, make_ctx(kind="parse", config=config)).output


@pytest.mark.parametrize(
    "text",
    ["label: refund\nconfidence: 0.91", "  Label : Refund \n\n CONFIDENCE:0.91\n", "label:refund\r\nconfidence: .91"],
)
def test_it_reads_label_and_confidence_tolerating_case_and_whitespace(text):
    output = parse({"output": text, "x": 1}, format="label_confidence", labels=LABELS)
    assert output == {"output": text, "x": 1, "label": "refund", "confidence": 0.91, "parse_uncertain": False}


def test_it_reads_the_configured_input_field():
    output = parse(
        {"classification": "label: billing\nconfidence: 1"}, format="label_confidence", input_field="classification"
    )
    assert (output["label"], output["confidence"]) == ("billing", 1.0)


def test_without_labels_any_label_is_kept_as_written():
    assert parse({"output": "label: Mystery Box\nconfidence: 0"}, format="label_confidence")["label"] == "Mystery Box"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ["refund 0.9", "expected 'label: <label>' and 'confidence: <0..1>' on two lines, got 'refund 0.9'"],
        ["label: refund\nconfidence: high", "expected 'label: <label>'"],
        ["label: refund\nconfidence: 0.9\nreason: x", "expected 'label: <label>'"],
        ["label: refund\nconfidence: 1.5", "the confidence must be from 0 to 1, not 1.5"],
        ["label: \nconfidence: 0.5", "the label must be non-empty text"],
        ["label: teapot\nconfidence: 0.5", "label 'teapot' is not one of billing, refund, other"],
    ],
)
def test_anything_else_fails_saying_why(text, message):
    with pytest.raises(StepError, match="^could not parse model output: " + message.replace("(", r"\(")) as error:
        parse({"output": text}, format="label_confidence", labels=LABELS)
    assert not error.value.transient


def test_a_missing_or_non_text_input_field_fails_naming_it():
    with pytest.raises(StepError, match="could not parse model output: the document has no field 'output'"):
        parse({}, format="label_confidence")
    with pytest.raises(StepError, match="could not parse model output: field 'output' must be text, not dict"):
        parse({"output": {}}, format="label_confidence")


def test_json_fields_go_under_fields_with_label_and_confidence_lifted():
    text = '{"label": "Refund", "confidence": 0.8, "order_total": 120}'
    output = parse({"output": text}, format="json", labels=LABELS)
    assert output["fields"] == {"label": "Refund", "confidence": 0.8, "order_total": 120}
    assert (output["label"], output["confidence"], output["parse_uncertain"]) == ("refund", 0.8, False)


def test_json_may_come_in_a_fence_and_without_label():
    output = parse({"output": '  ```json\n{"a": [1]}\n```\n'}, format="json")
    assert output["fields"] == {"a": [1]} and "label" not in output and "confidence" not in output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ["not json", "not JSON (Expecting value at line 1 column 1)"],
        ["[1, 2]", "expected a JSON object, got list"],
        ['{"confidence": "very"}', "the confidence must be a number from 0 to 1, not 'very'"],
        ['{"confidence": true}', "the confidence must be a number from 0 to 1, not True"],
        ['{"label": 3}', "the label must be non-empty text, not 3"],
        ['{"label": "teapot"}', "label 'teapot' is not one of billing, refund, other"],
    ],
)
def test_bad_json_fails_saying_why(text, message):
    with pytest.raises(StepError) as error:
        parse({"output": text}, format="json", labels=LABELS)
    assert str(error.value) == "could not parse model output: " + message


def test_an_integer_past_i_json_in_a_models_json_is_kept_as_its_string():
    text = '{"label": "refund", "order_id": 12345678901234567890, "lines": [9007199254740991, -9007199254740993]}'
    output = parse({"output": text}, format="json", labels=LABELS)
    assert output["fields"]["order_id"] == "12345678901234567890"
    assert output["fields"]["lines"] == [9007199254740991, "-9007199254740993"]
    canonical_bytes(output)  # the engine hashes it: nothing canonical JSON refuses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.canonical import canonical_bytes
from pipelines.steps.base import StepError
from pipelines.steps.transform import execute

from .helpers import make_ctx


def ctx_for(mapping: dict):
    return make_ctx(kind="transform", config={"mapping": mapping})


def test_it_adds_rendered_fields_to_the_document():
    document = {"subject": "Late parcel", "items": ["a", "b"]}
    result = execute(document, ctx_for({"title": "{{ subject | upper }}", "count": "{{ items | length }}"}))
    assert result.output == {**document, "title": "LATE PARCEL", "count": "2"}
    assert document == {"subject": "Late parcel", "items": ["a", "b"]}


def test_dotted_names_create_nested_objects_and_keep_siblings():
    result = execute({"meta": {"a": 1}, "x": "y"}, ctx_for({"meta.b": "{{ x }}", "new.deep.field": "z"}))
    assert result.output == {"meta": {"a": 1, "b": "y"}, "x": "y", "new": {"deep": {"field": "z"}}}


def test_every_template_sees_the_input_not_the_other_outputs():
    result = execute({"x": "1"}, ctx_for({"x": "{{ x }}2", "y": "{{ x }}"}))
    assert result.output == {"x": "12", "y": "1"}


def test_an_undefined_variable_fails_naming_the_field():
    with pytest.raises(StepError, match=r"transform of field 'greeting' failed: UndefinedError: 'name' is undefined"):
        execute({}, ctx_for({"greeting": "Hello {{ name }}"}))


def test_a_template_syntax_error_fails_naming_the_field():
    with pytest.raises(StepError, match=r"transform of field 'bad' failed: TemplateSyntaxError"):
        execute({}, ctx_for({"bad": "{{ x "}))


def test_the_sandbox_refuses_unsafe_access():
    with pytest.raises(StepError, match=r"transform of field 'peek' failed: SecurityError"):
        execute({"s": "x"}, ctx_for({"peek": "{{ s.__class__.__mro__ }}"}))


def test_writing_through_a_value_that_is_not_an_object_fails_naming_the_field():
    with pytest.raises(StepError, match=r"transform cannot write field 'subject.first': 'subject' is not an object"):
        execute({"subject": "x"}, ctx_for({"subject.first": "y"}))


# A step's document comes from a run input, whose integers are I-JSON's (pipelines/runs/inputs.py).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@given(document=st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), json_values, max_size=5))
def test_the_same_input_gives_the_same_bytes(document):
    ctx = ctx_for({"summary": "{{ _all | tojson }}", "keys": "{{ _all | list | sort | join(',') }}"})
    document = {**document, "_all": dict(document)}
    first = canonical_bytes(execute(document, ctx).output)
    assert canonical_bytes(execute(document, ctx).output) == first

"""Prompt and transform templates render within limits on loops, operations,
output and CPU time; each refusal names the limit (and the step names the
template), and what is known from the text alone is refused on save."""

import pytest
from django.core.exceptions import ValidationError

from pipelines.steps import validate_step_config
from pipelines.steps.base import StepError
from pipelines.steps.model import execute as model_execute
from pipelines.steps.prompts import MAX_CALL_DEPTH, TemplateLimitError, check_template, render_prompt
from pipelines.steps.transform import execute as transform_execute
from tests import factories

from .helpers import make_ctx, no_model_call

BIG = {"s": "x" * 1_000_000, "n": 10**9, "lines": "a\n" * 100_000, "tabs": "\t" * 1000, "items": list(range(10))}

# (template, words the refusal must hold): each would loop, allocate or recurse without end.
ADVERSARIAL = {
    "nested loops": (
        "{% for i in range(9000) %}{% for j in range(9000) %}x{% endfor %}{% endfor %}",
        "KEEL_TEMPLATE_MAX_ITERATIONS",
    ),
    "huge range": ("{{ range(10**9) | list | length }}", "KEEL_TEMPLATE_MAX_ITERATIONS"),
    "range from the input": ("{% for i in range(n) %}{% endfor %}", "KEEL_TEMPLATE_MAX_ITERATIONS"),
    "string multiplication": ('{{ "x" * 10**8 }}', "KEEL_TEMPLATE_MAX_OUTPUT"),
    "multiplication by the input": ("{{ s * n }}", "KEEL_TEMPLATE_MAX_OUTPUT"),
    "list multiplication": ("{{ ([1] * n) | length }}", "over the limit"),
    "huge power": ("{{ 2 ** n }}", "bits"),
    "doubling with ~": (
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s | length }}",
        "KEEL_TEMPLATE_MAX_OUTPUT",
    ),
    "doubling with +": (
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}"
        "{% endfor %}{{ ns.s | length }}",
        "KEEL_TEMPLATE_MAX_OUTPUT",
    ),
    "output captured in a set block": (
        "{% set x %}{% for i in range(5000) %}{{ s }}{% endfor %}{% endset %}{{ x|length }}",
        "KEEL_TEMPLATE_MAX_OUTPUT",
    ),
    "join of a repeated value": ("{{ ([s] * 5000) | join }}", "KEEL_TEMPLATE_MAX_OUTPUT"),
    "str.join": ("{{ ''.join([s] * 5000) }}", "KEEL_TEMPLATE_MAX_OUTPUT"),
    "recursion through a macro": (
        "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
        f"deeper than {MAX_CALL_DEPTH}",
    ),
    "exponential macro calls": (
        "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}",
        "KEEL_TEMPLATE_MAX_",
    ),
    "format width": ('{{ "{:>1000000000}".format(1) }}', "KEEL_TEMPLATE_MAX_OUTPUT"),
    "format width from the input": ('{{ "{:>{w}}".format(1, w=n) }}', "KEEL_TEMPLATE_MAX_OUTPUT"),
    "format precision": ('{{ "{:.999999999f}".format(1.5) }}', "KEEL_TEMPLATE_MAX_OUTPUT"),
    "percent format": ('{{ "%1000000000d" % 1 }}', "KEEL_TEMPLATE_MAX_OUTPUT"),
    "percent format with a starred width": ('{{ "%*d" % (n, 1) }}', "KEEL_TEMPLATE_MAX_OUTPUT"),
    "format filter": ('{{ "%.999999999f" | format(1.0) }}', "KEEL_TEMPLATE_MAX_OUTPUT"),
    "center filter": ('{{ "x" | center(10**9) }}', "KEEL_TEMPLATE_MAX_OUTPUT"),
    "ljust": ('{{ "x".ljust(n) }}', "KEEL_TEMPLATE_MAX_OUTPUT"),
    "expandtabs": ("{{ tabs.expandtabs(n) }}", "KEEL_TEMPLATE_MAX_OUTPUT"),
    "replace filter": ("{{ s | replace('x', s) }}", "KEEL_TEMPLATE_MAX_OUTPUT"),
    "str.replace": ("{{ s.replace('', s) }}", "KEEL_TEMPLATE_MAX_OUTPUT"),
    "indent filter": ("{{ lines | indent(s) }}", "KEEL_TEMPLATE_MAX_OUTPUT"),
    "wordwrap filter": ("{{ lines | wordwrap(1, wrapstring=s) }}", "KEEL_TEMPLATE_MAX_OUTPUT"),
    "sum of lists": ("{{ ([[1] * 1000] * 1000) | sum(start=[]) }}", "adds numbers only"),
    "list of a long text": ("{{ s | list | length }}", "walks at most"),
    "batch filling": ("{{ items | batch(10**9, 0) | list }}", "at most"),
    "lipsum": ("{{ lipsum(100000) }}", "at most 10,000 words"),
}


@pytest.mark.parametrize("body, limit", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_it_refuses_an_adversarial_template_naming_the_limit(body, limit):
    with pytest.raises(TemplateLimitError, match=limit):
        render_prompt(body, BIG)


def test_a_loop_that_keeps_working_is_stopped_by_its_cpu_time(settings):
    settings.KEEL_TEMPLATE_MAX_MILLISECONDS = 1
    settings.KEEL_TEMPLATE_MAX_ITERATIONS = 10**9
    settings.KEEL_TEMPLATE_MAX_OPERATIONS = 10**9
    body = "{% for i in range(10**6) %}{% for j in range(10**6) %}{{ s.upper()|length }}{% endfor %}{% endfor %}"
    with pytest.raises(TemplateLimitError, match="KEEL_TEMPLATE_MAX_MILLISECONDS"):
        render_prompt(body, {"s": "x" * 100_000})


def test_the_limits_are_settings(settings):
    settings.KEEL_TEMPLATE_MAX_ITERATIONS = 3
    assert render_prompt("{% for i in range(3) %}{{ i }}{% endfor %}", {}) == "012"
    with pytest.raises(TemplateLimitError, match="more than 3 times"):
        render_prompt("{% for i in items %}{{ i }}{% endfor %}", {"items": [1, 2, 3, 4]})
    settings.KEEL_TEMPLATE_MAX_OUTPUT = 1024
    with pytest.raises(TemplateLimitError, match="wrote more than 1,024 characters"):
        render_prompt("{% for i in items %}{{ text }}{% endfor %}", {"items": [1, 2, 3], "text": "y" * 400})


def test_ordinary_templates_render_as_before():
    body = (
        "{% macro item(x) %}<{{ x }}>{% endmacro %}Hi {{ name|upper }} {% for i in items %}{{ item(i) }}"
        "{% if loop.last %}({{ loop.length }}){% endif %}{% endfor %} {{ '{:>5}'.format(1) }} {{ '%05d' % 3 }}"
        " {{ 'a' ~ 'b' }} {{ [1, 2] + [3] }} {{ 6 * 7 }} {{ 2 ** 10 }} {{ 'ab' * 2 }}"
        "{% filter upper %} done{% endfilter %}"
    )
    rendered = render_prompt(body, {"name": "ada", "items": [1, 2]})
    assert rendered == "Hi ADA <1><2>(2)     1 00003 ab [1, 2, 3] 42 1024 abab DONE"


def test_a_template_the_size_of_the_step_input_limit_renders(settings):
    text = "z" * settings.KEEL_DOCUMENT_MAX_BYTES
    assert render_prompt("{{ text | upper }}", {"text": text}) == text.upper()


@pytest.mark.parametrize(
    "body, message",
    [
        ("{% for i in range(10**9) %}{% endfor %}", "range() of 1,000,000,000 items"),
        ("{% for i in range(200) %}{% for j in range(200) %}{% endfor %}{% endfor %}", "nested loops run 40,000"),
        ('{{ "x" * 10**8 }}', "str * 100,000,000"),
        ('{{ "%1000000000d" % 1 }}', "format width or precision"),
        ("{{ 2 ** 100000 }}", "bits"),
    ],
)
def test_a_prompt_that_always_goes_past_a_limit_is_refused_on_save_naming_the_body(acme, body, message):
    prompt = factories.PromptTemplateFactory.build(workspace=acme, owner=acme.owner, body=body, variables=[])
    with pytest.raises(ValidationError) as caught:
        prompt.full_clean()
    messages = " ".join(caught.value.message_dict["body"])
    assert "goes past a render limit on line 1" in messages and message in messages


def test_a_transform_mapping_that_always_goes_past_a_limit_is_refused_on_save_naming_the_field():
    with pytest.raises(ValidationError) as caught:
        validate_step_config("transform", {"mapping": {"summary": "{{ 'x' * 10**9 }}"}})
    (message,) = caught.value.message_dict["config"]
    assert message.startswith("config.mapping.summary:") and "KEEL_TEMPLATE_MAX_OUTPUT" in message


def test_a_template_whose_size_depends_on_its_input_is_saved():
    check_template("{{ s * n }} {% for i in range(n) %}{% endfor %}", ["s", "n"])


def test_a_model_step_whose_prompt_goes_past_a_limit_fails_naming_the_prompt_and_the_limit():
    step = {"kind": "model", "name": "draft", "config": {},
            "prompt": {"slug": "loopy", "body": "{% for i in range(n) %}{{ i }}{% endfor %}", "variables": ["n"]},
            "model": {"provider": "builtin", "model_name": "template-drafter"}}  # fmt: skip
    with pytest.raises(StepError) as caught:
        model_execute({"n": 10**6}, make_ctx(step=step, call_model=no_model_call))
    assert "prompt 'loopy' failed to render" in str(caught.value)
    assert "KEEL_TEMPLATE_MAX_ITERATIONS" in str(caught.value)


def test_a_transform_step_that_goes_past_a_limit_fails_naming_the_field_and_the_limit():
    ctx = make_ctx(kind="transform", config={"mapping": {"big": "{{ text * times }}"}})
    with pytest.raises(StepError) as caught:
        transform_execute({"text": "ab", "times": 10**9}, ctx)
    assert "transform of field 'big' failed" in str(caught.value) and "KEEL_TEMPLATE_MAX_OUTPUT" in str(caught.value)


def test_slices_and_comparisons_on_a_large_input_count_against_the_limits():
    body = "{% for i in range(10000) %}{% if s[::-1] == s and 'q' in s %}{% endif %}{% endfor %}"
    with pytest.raises(TemplateLimitError, match="KEEL_TEMPLATE_MAX_"):
        render_prompt(body, {"s": "y" * 1_000_000})


def test_a_long_template_without_loops_is_stopped_by_its_operations(settings):
    settings.KEEL_TEMPLATE_MAX_MILLISECONDS = 10**6
    body = "{% if s == t %}{% endif %}" * 60_000
    with pytest.raises(TemplateLimitError, match="KEEL_TEMPLATE_MAX_OPERATIONS"):
        render_prompt(body, {"s": "a", "t": "b"})


def test_a_split_that_would_make_too_many_items_is_refused():
    with pytest.raises(TemplateLimitError, match="str.split would make"):
        render_prompt("{{ s.split() | length }}", {"s": "a " * 200_000})

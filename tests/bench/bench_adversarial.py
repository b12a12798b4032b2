"""Adversarial inputs and templates: the worst time each takes to be refused or
taken by its bounded path (target: under 0.5 s each).

Each case runs ``REPEATS`` times; ``<case>_s`` is the worst wall-clock time,
``<case>_cpu_s`` the worst CPU time of the thread (the machine is shared, so
the two differ when other work runs beside it), and ``worst_s`` the worst
wall-clock time of all. Texts are as large as an upload may be
(``KEEL_DOCUMENT_MAX_BYTES``, 10 MiB by default). The tests
(tests/pipelines/steps/test_prompt_limits.py, tests/pipelines/steps/test_redact_step.py,
...) show what each case answers; here only its time is measured.

- ``redact_email_scan``: the built-in e-mail pattern over a run of local-part
  characters with no "@" (quadratic on a backtracking engine: hours).
- ``redact_nested_pattern``: a custom ``(a+)+$`` over "a"s ending in "!".
- ``redact_document``: all built-ins over text with an address, a phone number
  and a card number every kilobyte.
- ``redact_dense_digits`` / ``redact_dense_cards``: a candidate every 4 or 20
  characters, each checked in Python: linear, but the costliest per byte.
- ``schema_nested_pattern``: a JSON Schema ``pattern`` of ``^(a+)+$``.
- ``parse_spaces``: the parse step's label shape over a line of spaces.
- ``step_input_over_limit``: a step's input three times the step input limit.
- ``template_*``: prompt templates that loop, allocate or recurse without end.
"""

import time

REPEATS = 3


def _redact(text: str, **config) -> None:
    from pipelines.steps.redact import execute
    from tests.pipelines.steps.helpers import make_ctx

    execute({"body": text}, make_ctx(kind="redact", config={"fields": ["body"], **config}))


def _refused(call, *exceptions) -> None:
    try:
        call()
    except exceptions:
        return
    raise AssertionError("the adversarial case was not refused")


def _template(body: str, variables: dict | None = None):
    from pipelines.steps.prompts import TemplateLimitError, render_prompt

    return lambda: _refused(lambda: render_prompt(body, variables or {}), TemplateLimitError)


def _cases() -> dict:
    from django.conf import settings

    from pipelines.steps import execute_step
    from pipelines.steps.base import StepError
    from pipelines.steps.parse import execute as parse_execute
    from pipelines.steps.validate import document_problems
    from tests.pipelines.steps.helpers import make_ctx

    size = settings.KEEL_DOCUMENT_MAX_BYTES
    page = "x" * 900 + " ann@example.com, +44 20 7946 0958, 4111 1111 1111 1111 "
    document = (page * (size // len(page) + 1))[:size]
    megabyte = "y" * 1_000_000
    nested_schema = {"type": "string", "pattern": "^(a+)+$"}
    parse_ctx = make_ctx(kind="parse", config={"format": "label_confidence"})
    over_limit = {"body": "z" * (3 * settings.KEEL_STEP_INPUT_MAX_BYTES)}
    return {
        "redact_email_scan": lambda: _redact("a." * (size // 2), builtin=["email"]),
        "redact_nested_pattern": lambda: _redact(
            "a" * (size - 1) + "!", builtin=[], patterns=[{"name": "n", "regex": "(a+)+$"}]
        ),
        "redact_document": lambda: _redact(document),
        "redact_dense_digits": lambda: _redact("(1) " * (size // 4), builtin=["card", "phone"]),
        "redact_dense_cards": lambda: _redact("4111 1111 1111 1111 " * (size // 20), builtin=["card"]),
        "schema_nested_pattern": lambda: document_problems(nested_schema, "a" * (size - 1) + "!"),
        "parse_spaces": lambda: _refused(
            lambda: parse_execute({"output": "label:" + " " * size}, parse_ctx), StepError
        ),
        "step_input_over_limit": lambda: _refused(
            lambda: execute_step("ingest", over_limit, make_ctx(kind="ingest")), StepError
        ),
        "template_nested_loops": _template(
            "{% for i in range(9000) %}{% for j in range(9000) %}x{% endfor %}{% endfor %}"
        ),
        "template_range": _template("{% for i in range(n) %}{% endfor %}", {"n": 10**9}),
        "template_string_multiplication": _template('{{ "x" * n }}', {"n": 10**8}),
        "template_power": _template("{{ 2 ** n }}", {"n": 10**9}),
        "template_doubling": _template(
            "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
        ),
        "template_set_block": _template(
            "{% set x %}{% for i in range(5000) %}{{ s }}{% endfor %}{% endset %}", {"s": megabyte}
        ),
        "template_join": _template("{{ ([s] * 5000) | join }}", {"s": megabyte}),
        "template_macro_recursion": _template("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}"),
        "template_macro_calls": _template(
            "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}"
        ),
        "template_format_width": _template('{{ "{:>{w}}".format(1, w=n) }}', {"n": 10**9}),
        "template_percent_width": _template('{{ "%*d" % (n, 1) }}', {"n": 10**9}),
        "template_cpu_time": _template(
            "{% for i in range(10000) %}{{ s.upper() | length }}{% endfor %}", {"s": megabyte}
        ),
    }


def run() -> dict[str, float]:
    figures: dict[str, float] = {}
    for name, case in _cases().items():
        walls, cpus = [], []
        for _ in range(REPEATS):
            wall, cpu = time.perf_counter(), time.thread_time()
            case()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.thread_time() - cpu)
        figures[f"{name}_s"] = max(walls)
        figures[f"{name}_cpu_s"] = max(cpus)
    figures["worst_s"] = max(value for key, value in figures.items() if not key.endswith("_cpu_s"))
    return figures

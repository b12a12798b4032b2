"""Prompt templates render in Jinja2's sandbox; an undefined variable is an error."""

import functools

from django.core.exceptions import ValidationError
from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def check_template(body: str, declared: list[str]) -> None:
    """Refuse a body that does not parse, or that uses a variable it does not declare."""
    try:
        ast = _env.parse(body)
    except TemplateSyntaxError as exc:
        raise ValidationError({"body": f"Template syntax error on line {exc.lineno}: {exc.message}"}) from None
    undeclared = sorted(meta.find_undeclared_variables(ast) - set(declared))
    if undeclared:
        raise ValidationError(
            {"body": f"The template uses undeclared variables: {', '.join(undeclared)}. Declare them in 'variables'."}
        )


@functools.lru_cache(maxsize=256)
def _compiled(body: str):
    # Compiling a template costs milliseconds; a released prompt body never changes.
    return _env.from_string(body)


def render_prompt(body: str, variables: dict) -> str:
    return _compiled(body).render(**variables)

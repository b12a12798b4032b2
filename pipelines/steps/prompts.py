"""Prompt templates render in Jinja2's sandbox; an undefined variable is an error.

The sandbox keeps a template away from Python's internals, not from burning a
worker: ``{% for i in range(100000) %}{% for j in range(100000) %}`` or
``"x" * 10**8`` are valid Jinja. Every render here runs on a budget
(``KEEL_TEMPLATE_*`` settings) that the template's own code checks as it goes,
with no thread or signal:

- loop iterations (every ``for``, ``range`` sizes included);
- operations: calls, filters, tests, subscripts, attributes, comparisons,
  intercepted operators and concatenations (every step whose cost can grow
  with the input), which also bounds recursion through macros (and their
  depth, ``MAX_CALL_DEPTH``);
- output: every ``{{ }}`` and every piece of literal text counts, wherever it
  is written (a macro, a ``set`` block), so no buffer outgrows the limit;
- CPU time of the rendering thread, checked at each of the above;
- and one operation may never build a value larger than the output limit:
  sizes are worked out *before* ``*``, ``**``, ``%``, ``~``, ``str.format``,
  padding, ``replace``, ``join`` and the filters that could multiply their input.

A refusal is a TemplateLimitError naming the limit; the step that rendered
names the template. What can be known from the text alone (a constant range
too long, nested constant loops, a constant ``"x" * 10**8``) is refused when the
template is saved.
"""

import contextvars
import functools
import math
import string
import time
import types
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from governance.patterns import linear_compile

# How deep macros (and other template calls) may nest: far below Python's recursion limit.
MAX_CALL_DEPTH = 50
# The most items a list, tuple or dict a template builds may hold, and that a
# filter which walks its value (sort, unique, groupby, ...) may walk.
MAX_ITEMS = 100_000
# The largest integer an operator may make, in bits (about 10,000 decimal digits).
MAX_INT_BITS = 1 << 15
# Filters that run Python code per word or per character: their input is capped
# so that one call stays well inside the time limit.
SLOW_FILTER_MAX_CHARS = 1_000_000
SLOW_FILTERS = frozenset({"title", "wordwrap", "urlize", "striptags", "wordcount", "pprint", "xmlattr", "urlencode"})
# Filters that walk every item of their value.
WALKING_FILTERS = frozenset(
    {
        "list",
        "sort",
        "unique",
        "groupby",
        "map",
        "select",
        "reject",
        "selectattr",
        "rejectattr",
        "batch",
        "slice",
        "sum",
        "join",
        "min",
        "max",
        "dictsort",
        "items",
    }  # fmt: skip
)


class TemplateLimitError(Exception):
    """A template went past one of its render limits; the message names it."""


@dataclass
class Limits:
    iterations: int
    operations: int
    output: int
    seconds: float

    @classmethod
    def from_settings(cls) -> "Limits":
        return cls(
            iterations=settings.KEEL_TEMPLATE_MAX_ITERATIONS,
            operations=settings.KEEL_TEMPLATE_MAX_OPERATIONS,
            output=settings.KEEL_TEMPLATE_MAX_OUTPUT,
            seconds=settings.KEEL_TEMPLATE_MAX_MILLISECONDS / 1000,
        )


class _Budget:
    """What one render has left."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.iterations = limits.iterations
        self.operations = limits.operations
        self.output = limits.output
        self.depth = 0
        self.deadline = time.thread_time() + limits.seconds

    def tick(self) -> None:
        self.operations -= 1
        if self.operations < 0:
            raise TemplateLimitError(
                f"the template did more than {self.limits.operations:,} operations (KEEL_TEMPLATE_MAX_OPERATIONS)"
            )
        if time.thread_time() > self.deadline:
            raise TemplateLimitError(
                f"the template ran longer than {self.limits.seconds * 1000:,.0f} ms of CPU time "
                "(KEEL_TEMPLATE_MAX_MILLISECONDS)"
            )

    def iterate(self) -> None:
        self.iterations -= 1
        if self.iterations < 0:
            raise TemplateLimitError(
                f"the template's loops ran more than {self.limits.iterations:,} times (KEEL_TEMPLATE_MAX_ITERATIONS)"
            )
        self.tick()

    def write(self, size: int) -> None:
        self.output -= size
        if self.output < 0:
            raise TemplateLimitError(
                f"the template wrote more than {self.limits.output:,} characters (KEEL_TEMPLATE_MAX_OUTPUT)"
            )


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("keel_template_budget", default=None)


def _limits() -> Limits:
    budget = _budget.get()
    return budget.limits if budget is not None else Limits.from_settings()


def _tick() -> None:
    if (budget := _budget.get()) is not None:
        budget.tick()


def _too_big(what: str, size: int) -> TemplateLimitError:
    limit = _limits().output
    return TemplateLimitError(
        f"{what} would be {size:,} characters, over the limit of {limit:,} (KEEL_TEMPLATE_MAX_OUTPUT)"
    )


def _check_size(what: str, size: int) -> None:
    if size > _limits().output:
        raise _too_big(what, size)


def _check_value(value: object) -> object:
    """A value an operation made: refused when larger than any output could be."""
    if isinstance(value, (str, bytes)):
        _check_size("a text", len(value))
    elif isinstance(value, (list, tuple, dict, set, frozenset)) and len(value) > MAX_ITEMS:
        raise TemplateLimitError(f"a list of {len(value):,} items is over the limit of {MAX_ITEMS:,}")
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise TemplateLimitError(f"a number of {value.bit_length():,} bits is over the limit of {MAX_INT_BITS:,}")
    return value


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# A printf-style conversion: %[(key)][flags][width][.precision][length]type.
_PRINTF_SPEC = linear_compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|[0-9]+)?(?:\.(\*|[0-9]+))?[hlL]?[a-zA-Z%]")


def _format_sizes(spec: str) -> list[int]:
    # The numbers in a str.format spec ("<10", ">{w}", ".3f", ",.2%") that set a width or precision.
    digits = "".join(char if char.isdigit() else " " for char in spec)
    return [int(number) for number in digits.split()]


def _check_format(template: str, args=(), kwargs=None, *, printf: bool) -> None:
    """Widths and precisions in a format string (``str.format``, ``%``, the format
    filter) are sizes: refused over the output limit before anything is formatted."""
    limit = _limits().output
    starred = False
    if printf:
        sizes = []
        for match in _PRINTF_SPEC.finditer(template):
            for group in (1, 2):
                if match.group(group) == "*":
                    starred = True
                elif match.group(group):
                    sizes.append(int(match.group(group)))
    else:
        try:
            parsed = [spec or "" for _literal, _field, spec, _conversion in string.Formatter().parse(template)]
        except ValueError:
            return  # str.format raises the same error itself
        sizes = [size for spec in parsed for size in _format_sizes(spec)]
        starred = any("{" in spec for spec in parsed)  # "{:{width}}" takes the width from the arguments
    for size in sizes:
        if size > limit:
            raise _too_big("a format width or precision", size)
    if starred:
        for value in (*args, *(kwargs or {}).values()):
            if _int(value) and value > limit:
                raise _too_big("a format width taken from the arguments", value)


def _check_binop(operator: str, left: object, right: object) -> None:
    if operator == "*":
        for sequence, times in ((left, right), (right, left)):
            if isinstance(sequence, (str, bytes, list, tuple)) and _int(times):
                if isinstance(sequence, (str, bytes)):
                    _check_size(f"{type(sequence).__name__} * {times:,}", len(sequence) * max(times, 0))
                elif len(sequence) * max(times, 0) > MAX_ITEMS:
                    raise TemplateLimitError(
                        f"a list of {len(sequence) * times:,} items is over the limit of {MAX_ITEMS:,}"
                    )
        if _int(left) and _int(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TemplateLimitError(f"a product of over {MAX_INT_BITS:,} bits is over the limit")
    elif operator == "**" and _int(left) and _int(right) and right > 0 and abs(left) > 1:
        if right * abs(left).bit_length() > MAX_INT_BITS:
            raise TemplateLimitError(f"{left} ** {right} has over {MAX_INT_BITS:,} bits, over the limit")
    elif operator == "%" and isinstance(left, str):
        _check_format(left, right if isinstance(right, tuple) else (right,), printf=True)
    elif operator == "+" and isinstance(left, str) and isinstance(right, str):
        _check_size("a concatenation", len(left) + len(right))


def _str_method_check(method, args: tuple, kwargs: dict) -> None:
    """Sizes a str method would make, worked out before it runs."""
    text, name = method.__self__, method.__name__
    numbers = [value for value in (*args, *kwargs.values()) if _int(value)]
    if name in ("ljust", "rjust", "center", "zfill"):
        _check_size(f"str.{name}", max([len(text), *numbers]))
    elif name == "expandtabs":
        size = max(numbers, default=8)
        _check_size("str.expandtabs", len(text) + text.count("\t") * max(size, 0))
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        _check_size("str.replace", _replaced_size(text, args[0], args[1]))
    elif name == "join" and args:
        _check_join(args[0], text)
    elif name in ("split", "rsplit", "splitlines"):
        separator = args[0] if args and isinstance(args[0], str) else kwargs.get("sep")
        if isinstance(separator, str) and separator:
            pieces = text.count(separator) + 1
        else:  # whitespace or line breaks: counted by the common ones
            pieces = sum(text.count(char) for char in " \t\n\r") + 1
        if pieces > MAX_ITEMS:
            raise TemplateLimitError(f"str.{name} would make {pieces:,} items, over the limit of {MAX_ITEMS:,}")
    elif name in ("format", "format_map"):
        _check_format(text, args, kwargs, printf=False)


def _replaced_size(text: str, old: str, new: str) -> int:
    occurrences = text.count(old) if old else len(text) + 1
    return len(text) + occurrences * max(len(new) - len(old), 0)


def _check_join(items: object, separator: str) -> None:
    if isinstance(items, (list, tuple)):
        if len(items) > MAX_ITEMS:
            raise TemplateLimitError(f"joining {len(items):,} items is over the limit of {MAX_ITEMS:,}")
        size = sum(len(item) for item in items if isinstance(item, str)) + len(separator) * len(items)
        _check_size("a join", size)


def _filter_check(name: str, value: object, args: tuple, kwargs: dict) -> None:
    """Sizes a built-in filter would make (or walk), worked out before it runs."""
    if name in SLOW_FILTERS and isinstance(value, str) and len(value) > SLOW_FILTER_MAX_CHARS:
        raise TemplateLimitError(
            f"the {name} filter takes at most {SLOW_FILTER_MAX_CHARS:,} characters, not {len(value):,}"
        )
    if name in WALKING_FILTERS and hasattr(value, "__len__") and len(value) > MAX_ITEMS:
        raise TemplateLimitError(f"the {name} filter walks at most {MAX_ITEMS:,} items, not {len(value):,}")
    text = value if isinstance(value, str) else None
    first = args[0] if args else None
    if name == "center" and _int(first):
        _check_size("the center filter", first)
    elif name == "indent" and text is not None:
        width = kwargs.get("width", first if first is not None else 4)
        width = len(width) if isinstance(width, str) else width if _int(width) else 0
        _check_size("the indent filter", len(text) + (text.count("\n") + 1) * max(width, 0))
    elif name == "replace" and text is not None and len(args) >= 2:
        _check_size("the replace filter", _replaced_size(text, str(args[0]), str(args[1])))
    elif name == "wordwrap" and text is not None:
        wrapstring = kwargs.get("wrapstring", args[2] if len(args) > 2 else None) or "\n"
        width = kwargs.get("width", first if first is not None else 79)
        breaks = len(text) // max(width, 1) + text.count("\n") + 1 if _int(width) else len(text)
        _check_size("the wordwrap filter", len(text) + breaks * len(str(wrapstring)))
    elif name == "format" and text is not None:
        _check_format(text, args, kwargs, printf=True)
    elif name == "join":
        separator = kwargs.get("d", first if first is not None else "")
        _check_join(value, str(separator))
    elif name in ("batch", "slice") and _int(first) and first > MAX_ITEMS:
        raise TemplateLimitError(f"the {name} filter makes at most {MAX_ITEMS:,} pieces, not {first:,}")
    elif name == "sum":
        # sum(start=[]) adds lists one copy at a time: quadratic in their length.
        start = kwargs.get("start", args[1] if len(args) > 1 else 0)
        if isinstance(start, bool) or not isinstance(start, (int, float)):
            raise TemplateLimitError("the sum filter adds numbers only")
    elif name == "tojson":
        indent = kwargs.get("indent", first)
        if _int(indent) and indent > 16:
            raise TemplateLimitError(f"the tojson filter indents by at most 16, not {indent:,}")


def _bounded_filter(name: str, function):
    # Filters marked pass_context / pass_eval_context / pass_environment get that first.
    skip = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(function)
    def bounded(*args, **kwargs):
        _tick()
        if len(args) > skip:
            _filter_check(name, args[skip], args[skip + 1 :], kwargs)
        return _check_value(function(*args, **kwargs))

    return bounded


def _counted_test(function):
    # Tests ("is in", "is divisibleby") run on values as large as the input: each one counts.
    @functools.wraps(function)
    def counted(*args, **kwargs):
        _tick()
        return function(*args, **kwargs)

    return counted


def _bounded_range(*args: int) -> range:
    limit = _limits().iterations
    try:
        numbers = range(*args)
        size = len(numbers)
    except OverflowError:
        size = math.inf
    if size > limit:
        raise TemplateLimitError(
            f"range() of {size:,} items is over the limit of {limit:,} (KEEL_TEMPLATE_MAX_ITERATIONS)"
        )
    return numbers


def _bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    from jinja2.utils import generate_lorem_ipsum

    if not (_int(n) and _int(max)) or n * max > 10_000:
        raise TemplateLimitError("lipsum() makes at most 10,000 words")
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


class _Counted:
    """A loop's iterable, counting each item against the render's iterations."""

    __slots__ = ("_iterable",)

    def __init__(self, iterable):
        self._iterable = iterable

    def __iter__(self):
        budget = _budget.get()
        for item in self._iterable:
            if budget is not None:
                budget.iterate()
            yield item

    def __len__(self) -> int:
        return len(self._iterable)  # a TypeError here makes Jinja's loop.length count the items itself


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with the render limits above."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options):
        super().__init__(**options, finalize=self._written)
        self.filters = {name: _bounded_filter(name, function) for name, function in self.filters.items()}
        self.tests = {name: _counted_test(function) for name, function in self.tests.items()}
        self.globals["range"] = _bounded_range
        self.globals["lipsum"] = _bounded_lipsum

    @staticmethod
    def _written(value: object) -> str:
        # Every {{ }} and piece of literal text passes here, in macros and set blocks too.
        text = str(value)
        if (budget := _budget.get()) is not None:
            budget.write(len(text))
            budget.tick()
        return text

    def call_binop(self, context, operator, left, right):
        _tick()
        _check_binop(operator, left, right)
        return _check_value(super().call_binop(context, operator, left, right))

    def call(self, context, obj, /, *args, **kwargs):
        budget = _budget.get()
        if budget is not None:
            budget.tick()
            budget.depth += 1
        try:
            if budget is not None and budget.depth > MAX_CALL_DEPTH:
                raise TemplateLimitError(f"the template nests calls deeper than {MAX_CALL_DEPTH} (a macro recursing?)")
            method = getattr(obj, "__wrapped__", obj)  # the sandbox wraps str.format
            if isinstance(method, types.BuiltinMethodType) and isinstance(method.__self__, str):
                _str_method_check(method, args, kwargs)
            return _check_value(super().call(context, obj, *args, **kwargs))
        finally:
            if budget is not None:
                budget.depth -= 1

    def getitem(self, obj, argument):
        # x[i] and slices (a copy as long as the value): each counts, and its result is sized.
        _tick()
        return _check_value(super().getitem(obj, argument))

    def getattr(self, obj, attribute):
        _tick()
        return super().getattr(obj, attribute)

    def keel_op(self, value):
        # After a comparison ("==", "in", "<"), linear in values as large as the input.
        _tick()
        return value

    def keel_loop(self, iterable) -> _Counted:
        return _Counted(iterable)

    def keel_concat(self, *parts) -> str:
        texts = [str(part) for part in parts]
        _check_size("a ~ concatenation", sum(len(text) for text in texts))
        return "".join(texts)

    def keel_text(self, text: str) -> str:
        return text


class _Bounded(NodeTransformer):
    """Routes what the environment could not otherwise see through it: each
    loop's iterable (counted), each ``~`` (sized first), each comparison
    (counted) and each piece of literal text (written through finalize).
    ``environment.*`` attributes cannot be shadowed by a template's own names."""

    def _call(self, name: str, args: list, node: nodes.Node) -> nodes.Call:
        return nodes.Call(nodes.EnvironmentAttribute(name), args, [], None, None, lineno=node.lineno)

    def visit_For(self, node: nodes.For) -> nodes.For:
        node = self.generic_visit(node)
        node.iter = self._call("keel_loop", [node.iter], node)
        return node

    def visit_Compare(self, node: nodes.Compare) -> nodes.Call:
        node = self.generic_visit(node)
        return self._call("keel_op", [node], node)

    def visit_Concat(self, node: nodes.Concat) -> nodes.Call:
        node = self.generic_visit(node)
        return self._call("keel_concat", list(node.nodes), node)

    def visit_Output(self, node: nodes.Output) -> nodes.Output:
        node = self.generic_visit(node)
        node.nodes = [
            self._call("keel_text", [nodes.Const(child.data, lineno=child.lineno)], child)
            if isinstance(child, nodes.TemplateData)
            else child
            for child in node.nodes
        ]
        return node


_env = BoundedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class _NotStatic(Exception):
    pass


_STATIC_BINOPS = {nodes.Add: "+", nodes.Sub: "-", nodes.Mul: "*", nodes.Pow: "**", nodes.Mod: "%"}


def _static(node: nodes.Node) -> object:
    """The value of a constant expression, computed within the limits; _NotStatic otherwise."""
    if isinstance(node, nodes.Const) and isinstance(node.value, (int, float, str)):
        return node.value
    if isinstance(node, nodes.Neg):
        value = _static(node.node)
        if isinstance(value, (int, float)):
            return -value
    if type(node) in _STATIC_BINOPS:
        operator = _STATIC_BINOPS[type(node)]
        left, right = _static(node.left), _static(node.right)
        _check_binop(operator, left, right)
        try:
            return _env.binop_table[operator](left, right)
        except (TypeError, ValueError, ArithmeticError):
            raise _NotStatic() from None
    raise _NotStatic()


def _static_loop_length(node: nodes.Node) -> int | None:
    # range(<constants>) or a constant list: how many times a loop over it runs.
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "range":
        try:
            args = [_static(arg) for arg in node.args]
        except _NotStatic:
            return None
        if node.kwargs or not all(_int(arg) for arg in args) or not 1 <= len(args) <= 3:
            return None
        try:
            return len(range(*args))
        except (OverflowError, ValueError):
            return math.inf
    if isinstance(node, (nodes.List, nodes.Tuple)):
        return len(node.items)
    return None


def _static_problems(ast: nodes.Template, limits: Limits) -> list[str]:
    problems: list[str] = []
    for node in ast.find_all((nodes.BinExpr, nodes.Call)):
        try:
            if isinstance(node, nodes.BinExpr):
                _static(node)
            elif (length := _static_loop_length(node)) is not None and length > limits.iterations:
                raise TemplateLimitError(
                    f"range() of {length:,} items is over the limit of {limits.iterations:,} "
                    "(KEEL_TEMPLATE_MAX_ITERATIONS)"
                )
        except _NotStatic:
            continue
        except TemplateLimitError as exc:
            problems.append(f"line {node.lineno}: {exc}")

    def nested(node: nodes.Node, runs: float) -> None:
        for child in node.iter_child_nodes():
            if isinstance(child, nodes.For):
                length = _static_loop_length(child.iter)
                total = runs * length if length is not None else runs
                if length is not None and total > limits.iterations and length <= limits.iterations:
                    problems.append(
                        f"line {child.lineno}: nested loops run {total:,} times, over the limit of "
                        f"{limits.iterations:,} (KEEL_TEMPLATE_MAX_ITERATIONS)"
                    )
                nested(child, total)
            else:
                nested(child, runs)

    nested(ast, 1)
    return problems


def template_limit_problems(ast: nodes.Template) -> list[str]:
    """What in a parsed template goes past a render limit whatever its input."""
    limits = Limits.from_settings()
    token = _budget.set(_Budget(limits))
    try:
        return [f"The template goes past a render limit on {p}" for p in _static_problems(ast, limits)]
    finally:
        _budget.reset(token)


def parse_template(body: str, *, field: str) -> nodes.Template:
    """The parsed template, or a ValidationError naming ``field`` (syntax, or a limit it always goes past)."""
    try:
        ast = _env.parse(body)
    except TemplateSyntaxError as exc:
        raise ValidationError({field: f"Template syntax error on line {exc.lineno}: {exc.message}"}) from None
    if problems := template_limit_problems(ast):
        raise ValidationError({field: problems})
    return ast


def check_template(body: str, declared: list[str]) -> None:
    """Refuse a body that does not parse, that goes past a render limit whatever
    its input, or that uses a variable it does not declare."""
    ast = parse_template(body, field="body")
    undeclared = sorted(meta.find_undeclared_variables(ast) - set(declared))
    if undeclared:
        raise ValidationError(
            {"body": f"The template uses undeclared variables: {', '.join(undeclared)}. Declare them in 'variables'."}
        )


@functools.lru_cache(maxsize=256)
def _compiled(body: str):
    # Compiling a template costs milliseconds; a released prompt body never changes.
    return _env.from_string(_Bounded().visit(_env.parse(body)))


def render_prompt(body: str, variables: dict) -> str:
    """Render ``body`` over ``variables`` within the KEEL_TEMPLATE_* limits
    (TemplateLimitError names the one it went past)."""
    template = _compiled(body)
    token = _budget.set(_Budget(Limits.from_settings()))
    try:
        return template.render(**variables)
    finally:
        _budget.reset(token)

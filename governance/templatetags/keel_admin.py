"""Template filters of Keel's admin pages: ``{% load keel_admin %}``."""

from django import template

from governance.admin_history import DiffLine

register = template.Library()

_KINDS = {"@": "hunk", "+": "add", "-": "del"}


@register.filter
def diff_lines(lines: list[str] | None) -> list[DiffLine]:
    """A unified diff's lines, each with its kind, for the coloured diff the
    history pages use (``_history_styles.html``); the file headers dropped."""
    return [
        DiffLine(_KINDS.get(line[:1], "same"), line) for line in lines or [] if not line.startswith(("--- ", "+++ "))
    ]

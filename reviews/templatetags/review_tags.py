"""Template filters of the reviewer app."""

from django import template

register = template.Library()


@register.filter
def percent(share: float | None, places: int = 0) -> str:
    """A share from 0 to 1 as a percentage ("33%", or "33.3%" with 1 place); "–" for none."""
    if share is None or share == "":
        return "–"
    return f"{float(share) * 100:.{int(places)}f}%"

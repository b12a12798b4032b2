"""The metrics page's charts, drawn on the server as inline SVG: no script,
so nothing for the content security policy to allow, and the page reads the
same in any browser. Each chart is a title, the SVG, and a one-line summary
that is also its text alternative."""

from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from reviews.metrics import Day

WIDTH, HEIGHT = 520, 190
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 12, 26  # the plot's margins, for the axis labels
INK, GRID, MUTED = "#1d232b", "#e3e6ea", "#5b6470"
COLOURS = {"approved": "#1d6b3a", "edited": "#b26a00", "rejected": "#b3261e", "volume": "#2f5d8a", "held": "#7a4fa0"}


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    svg: SafeString
    summary: str


def _x(index: int, count: int) -> float:
    span = WIDTH - LEFT - RIGHT
    return LEFT + (span * (index + 0.5) / count if count else 0)


def _y(value: float, top: float) -> float:
    span = HEIGHT - TOP - BOTTOM
    return TOP + span - (span * value / top if top else 0)


def _frame(days: list[Day], top: float, label) -> list[str]:
    """The grid, the y axis at 0, half and top, and the first, middle and last dates."""
    parts = []
    for value in (0, top / 2, top):
        y = _y(value, top)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="{MUTED}">'
            f"{escape(label(value))}</text>"
        )
    last = len(days) - 1
    for index in sorted({0, len(days) // 2, last}):
        # The first and last dates lean inwards, so neither is cut at the edge.
        anchor = "start" if index == 0 and last else "end" if index == last and last else "middle"
        x = LEFT if anchor == "start" else WIDTH - RIGHT if anchor == "end" else _x(index, len(days))
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}" font-size="11" '
            f'fill="{MUTED}">{days[index].date:%b %d}</text>'
        )
    return parts


def _svg(key: str, title: str, parts: list[str]) -> SafeString:
    # Every value drawn is a number or a date, or passed through escape().
    return mark_safe(  # noqa: S308
        f'<svg class="chart" id="chart-{key}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart-{key}-title" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="chart-{key}-title">{escape(title)}</title>{"".join(parts)}</svg>'
    )


def bars(key: str, title: str, days: list[Day], values: list[float], *, colour: str, label) -> SafeString:
    top = max(values, default=0) or 1
    width = max(2.0, (WIDTH - LEFT - RIGHT) / max(1, len(days)) - 3)
    parts = _frame(days, top, label)
    for index, (day, value) in enumerate(zip(days, values, strict=True)):
        if not value:
            continue
        y = _y(value, top)
        parts.append(
            f'<rect x="{_x(index, len(days)) - width / 2:.1f}" y="{y:.1f}" width="{width:.1f}" '
            f'height="{HEIGHT - BOTTOM - y:.1f}" fill="{colour}"><title>{day.date:%b %d}: '
            f"{escape(label(value))}</title></rect>"
        )
    return _svg(key, title, parts)


def lines(key: str, title: str, days: list[Day], series: dict[str, list[float | None]], *, top: float, label):
    """One line per series; a day without a value breaks the line (and a lone value is a dot)."""
    top = top or 1
    parts = _frame(days, top, label)
    for name, values in series.items():
        colour = COLOURS.get(name, INK)
        run: list[str] = []
        for index, value in enumerate([*values, None]):
            if value is not None:
                run.append(f"{_x(index, len(days)):.1f},{_y(value, top):.1f}")
                parts.append(
                    f'<circle cx="{_x(index, len(days)):.1f}" cy="{_y(value, top):.1f}" r="2.5" fill="{colour}">'
                    f"<title>{escape(name)}, {days[index].date:%b %d}: {escape(label(value))}</title></circle>"
                )
                continue
            if len(run) > 1:
                parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" stroke-width="2"/>')
            run = []
    return _svg(key, title, parts)


def _percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def metrics_charts(days: list[Day]) -> list[Chart]:
    """Volume, held share, decision rates and time to decision, per day."""
    if not days:
        return []
    volume = [d.gated for d in days]
    held = [d.held_share for d in days]
    rates = {
        "approved": [d.approval_rate for d in days],
        "edited": [d.edit_rate for d in days],
        "rejected": [d.rejection_rate for d in days],
    }
    waits = [d.median_seconds for d in days]
    total, held_total, decided = sum(volume), sum(d.held for d in days), sum(d.decided for d in days)
    span = f"{days[0].date:%b %d} to {days[-1].date:%b %d}"
    slowest = max((w for w in waits if w is not None), default=None)
    return [
        Chart(
            "volume", "Outputs through the gate, per day",
            bars("volume", "Outputs through the gate, per day", days, volume, colour=COLOURS["volume"],
                 label=lambda v: f"{v:.0f}"),
            f"{total} outputs from {span}.",
        ),
        Chart(
            "held", "Share held for review",
            lines("held", "Share held for review", days, {"held": held}, top=1, label=_percent),
            f"{held_total} of {total} held ({_percent(held_total / total) if total else '–'}).",
        ),
        Chart(
            "rates", "Approved as is, edited, rejected",
            lines("rates", "Approved as is, edited, rejected", days, rates, top=1, label=_percent),
            f"{decided} review{'' if decided == 1 else 's'} decided from {span}.",
        ),
        Chart(
            "wait", "Median time to decision",
            lines("wait", "Median time to decision", days, {"median": waits}, top=slowest or 1,
                  label=_duration),
            f"Slowest day's median: {_duration(slowest)}." if slowest is not None else "No review decided yet.",
        ),
    ]  # fmt: skip

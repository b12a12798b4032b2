"""Template filters shared by every page of Keel: ``{% load keel %}``.

``when`` is the one way Keel shows a moment: local time (the ``TIME_ZONE``
setting, or the zone activated for the request) with the zone's abbreviation,
and UTC in ISO 8601 on hover and in the ``datetime`` attribute, which exports
and machines read.
"""

from datetime import UTC, datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()

LOCAL_FORMAT = "%Y-%m-%d %H:%M %Z"


@register.filter
def when(value: datetime | None) -> str:
    """``<time datetime="…Z" title="… UTC">2026-12-06 11:02 CET</time>``; empty for None."""
    if value is None:
        return ""
    if timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    utc = value.astimezone(UTC)
    local = timezone.localtime(value)
    return format_html(
        '<time datetime="{}" title="{} UTC">{}</time>',
        utc.isoformat(timespec="seconds").replace("+00:00", "Z"),
        utc.strftime("%Y-%m-%d %H:%M:%S"),
        local.strftime(LOCAL_FORMAT),
    )

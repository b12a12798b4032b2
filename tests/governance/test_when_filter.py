from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from django.template import Context, Template
from django.utils import timezone


def render(value) -> str:
    return Template("{% load keel %}{{ value|when }}").render(Context({"value": value}))


def test_it_shows_local_time_with_the_zone_and_utc_on_hover():
    moment = datetime(2026, 12, 6, 10, 2, 57, tzinfo=UTC)
    with timezone.override(ZoneInfo("Europe/Berlin")):
        html = render(moment)
    assert html == '<time datetime="2026-12-06T10:02:57Z" title="2026-12-06 10:02:57 UTC">2026-12-06 11:02 CET</time>'


def test_it_renders_nothing_for_no_moment():
    assert render(None) == ""

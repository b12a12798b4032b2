from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from django.contrib.admin.utils import display_for_value
from django.template import Context, Template
from django.utils import formats, timezone


def render(value) -> str:
    return Template("{% load keel %}{{ value|when }}").render(Context({"value": value}))


def test_it_shows_local_time_with_the_zone_and_utc_on_hover():
    moment = datetime(2026, 12, 6, 10, 2, 57, tzinfo=UTC)
    with timezone.override(ZoneInfo("Europe/Berlin")):
        html = render(moment)
    assert html == '<time datetime="2026-12-06T10:02:57Z" title="2026-12-06 10:02:57 UTC">2026-12-06 11:02 CET</time>'


def test_it_renders_nothing_for_no_moment():
    assert render(None) == ""


def test_djangos_own_formats_show_a_moment_as_when_does():
    """The admin's lists and read-only fields and ``|date`` without a format
    (config/formats/) write the same local time with its zone."""
    moment = datetime(2026, 12, 6, 10, 2, 57, tzinfo=UTC)
    with timezone.override(ZoneInfo("Europe/Berlin")):
        local = timezone.localtime(moment)
        assert display_for_value(local, "") == "2026-12-06 11:02 CET"
        assert Template("{{ value|date }} {{ value|time }}").render(Context({"value": local})) == "2026-12-06 11:02"
        assert formats.date_format(local, "DATETIME_FORMAT") in render(moment)


def test_the_admin_lists_a_moment_in_that_format(admin_client, acme):
    page = admin_client.get("/admin/governance/workspace/").content.decode()
    assert timezone.localtime(acme.created_at).strftime("%Y-%m-%d %H:%M UTC") in page

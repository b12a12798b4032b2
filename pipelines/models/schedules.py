import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from pipelines.models.config import Pipeline, PipelinePart

CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def parse_cron(expression: str) -> dict[str, str]:
    """A five-field cron expression as crontab keyword arguments; raises
    ValidationError naming the field that is wrong."""
    from celery.schedules import crontab

    parts = (expression or "").split()
    if len(parts) != 5:
        raise ValidationError(
            {"cron": f"A cron expression has five fields (minute hour day month weekday); this one has {len(parts)}."}
        )
    fields = dict(zip(CRON_FIELDS, parts, strict=True))
    for name, value in fields.items():
        try:
            crontab(**{name: value})
        except (ValueError, TypeError) as exc:
            label = name.replace("_", " ")
            raise ValidationError({"cron": f"The {label} field {value!r} is not valid: {exc}"}) from None
    return fields


class PipelineSchedule(PipelinePart, models.Model):
    """A pipeline run on a cron schedule with a fixed input (a monthly client
    report, say). Celery beat reads it through its django-celery-beat
    periodic task, which ``schedule_save`` keeps in step; each firing is an
    ordinary run with trigger ``schedule``."""

    pipeline = models.ForeignKey(Pipeline, on_delete=models.PROTECT, related_name="schedules")
    name = models.CharField(max_length=200)
    cron = models.CharField(
        max_length=100,
        help_text="Five fields: minute hour day-of-month month day-of-week, e.g. <code>0 9 1 * *</code>.",
    )
    timezone = models.CharField(max_length=63, default="UTC")
    input = models.JSONField(default=dict, blank=True, help_text="The input every scheduled run starts with.")
    enabled = models.BooleanField(default=True)
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", on_delete=models.SET_NULL, null=True, blank=True, editable=False
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", editable=False
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pipeline__name", "name"]
        verbose_name = "schedule"

    def __str__(self) -> str:
        return f"{self.name} ({self.cron} {self.timezone})"

    def clean(self) -> None:
        parse_cron(self.cron)
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValidationError(
                {"timezone": f"{self.timezone!r} is not a time zone name such as Europe/London."}
            ) from None
        if not isinstance(self.input, dict):
            raise ValidationError({"input": "The input must be a JSON object."})

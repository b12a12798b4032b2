"""Deployment checks (``manage.py check --deploy``) for the audit trail."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def checkpoint_key_set(app_configs, **kwargs):
    if settings.KEEL_CHECKPOINT_KEY:
        return []
    return [
        Warning(
            "KEEL_CHECKPOINT_KEY is not set, so no signed checkpoints of the audit chain are written and "
            "deleting its newest events would go unnoticed.",
            hint="Set KEEL_CHECKPOINT_KEY (a long random secret) and KEEL_CHECKPOINT_DIR (outside the database).",
            id="keel.W001",
        )
    ]

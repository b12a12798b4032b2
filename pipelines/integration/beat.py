"""Celery beat's scheduler: django-celery-beat's database scheduler (schedules
kept in the database and edited in the admin, the fixed ones from
CELERY_BEAT_SCHEDULE merged in), recording beat's heartbeat as it ticks."""

import time

from django_celery_beat.schedulers import DatabaseScheduler

from pipelines.integration.health import heartbeat_record

HEARTBEAT_EVERY_SECONDS = 15.0


class KeelScheduler(DatabaseScheduler):
    _last_heartbeat = 0.0

    def tick(self, *args, **kwargs):
        now = time.monotonic()
        if now - self._last_heartbeat >= HEARTBEAT_EVERY_SECONDS:
            try:
                heartbeat_record("beat")
                self._last_heartbeat = now
            except Exception:  # a database blip must not stop the schedules; ready will say beat is stale
                self.logger.exception("Could not record beat's heartbeat")
        # Never sleep past the next heartbeat, however far away the next schedule is.
        return min(super().tick(*args, **kwargs), HEARTBEAT_EVERY_SECONDS)

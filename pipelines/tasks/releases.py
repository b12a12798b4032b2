"""The beat task that watches production canaries."""

from celery import shared_task

from pipelines.releases.canary import canaries_watch


@shared_task(name="pipelines.watch_canaries")
def canaries_watch_task() -> list[int]:
    return canaries_watch()

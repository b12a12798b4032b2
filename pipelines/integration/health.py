"""Health for the load balancer and the operator.

``/health/live`` answers from the process alone. ``/health/ready`` checks the
database, the broker, and the last heartbeats of a worker and of beat: a
worker records one when it starts and whenever it runs the ``heartbeat`` task
beat sends it every 30 seconds; beat records its own as it ticks. Neither page
shows a secret, a URL or any data: only what is up and what is not.
"""

from datetime import timedelta

from django.conf import settings
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from pipelines.broker import broker_down
from pipelines.models import Heartbeat
from pipelines.queries import database_ping

COMPONENTS = ("worker", "beat")


def heartbeat_record(component: str) -> None:
    """Overwrite the component's heartbeat (not audited: it records no change, only liveness)."""
    Heartbeat.objects.update_or_create(component=component, defaults={"seen_at": timezone.now()})


@require_GET
@never_cache
def live(request) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database() -> str | None:
    try:
        database_ping()
    except Exception as exc:  # any failure means not ready; the reason is its kind, never its text
        return type(exc).__name__
    return None


def _heartbeats(now) -> dict[str, dict]:
    limit = timedelta(seconds=settings.KEEL_HEARTBEAT_MAX_AGE_SECONDS)
    seen = dict(Heartbeat.objects.filter(component__in=COMPONENTS).values_list("component", "seen_at"))
    checks = {}
    for component in COMPONENTS:
        at = seen.get(component)
        if at is None:
            checks[component] = {"ok": False, "reason": "no heartbeat yet"}
        elif now - at > limit:
            checks[component] = {"ok": False, "reason": f"last heartbeat {int((now - at).total_seconds())}s ago"}
        else:
            checks[component] = {"ok": True, "age_seconds": max(int((now - at).total_seconds()), 0)}
    return checks


def readiness() -> dict:
    """What ``/health/ready`` answers: ``{"status", "down", "checks"}``, each
    check ``ok`` with an age or a reason (a kind of failure, never its text)."""
    checks: dict[str, dict] = {}
    problem = _database()
    checks["database"] = {"ok": problem is None, **({"reason": problem} if problem else {})}
    problem = broker_down()  # through this process's own producer, as a run's message goes
    checks["broker"] = {"ok": problem is None, **({"reason": problem} if problem else {})}
    if checks["database"]["ok"]:
        checks.update(_heartbeats(timezone.now()))
    else:
        checks.update({c: {"ok": False, "reason": "unknown: the database is down"} for c in COMPONENTS})
    down = [name for name, check in checks.items() if not check["ok"]]
    return {"status": "ok" if not down else "unavailable", "down": down, "checks": checks}


@require_GET
@never_cache
def ready(request) -> JsonResponse:
    body = readiness()
    return JsonResponse(body, status=200 if not body["down"] else 503)

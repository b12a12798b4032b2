"""Answers while the database, the broker or the cache is away: 503 with
``Retry-After``, never a traceback or an HTML 500.

An API path (``/api/...``) gets the API's JSON error shape
(``{"status": 503, "errors": [{"field": null, "reason": ...}]}``); any other
page a short plain page. Three routes lead here, so that every layer is
covered: the API's exception handler (pipelines/integration/api/errors.py), this
module's middleware for any other view, and ``server_error`` (the project's
``handler500``) for an error raised by a middleware itself, such as a
session read before the view runs.
"""

import logging
import sys

import redis.exceptions
from django.conf import settings
from django.db import InterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.http import HttpResponse, JsonResponse
from django.views import defaults
from kombu.exceptions import OperationalError as BrokerError

logger = logging.getLogger("keel.outages")

# The errors that mean "a service is away", by the service they name. A
# database's OperationalError is a lost or refused connection on PostgreSQL
# (and a locked file on SQLite): both pass.
OUTAGES: tuple[tuple[str, tuple[type[BaseException], ...]], ...] = (
    ("database", (DatabaseOperationalError, InterfaceError)),
    ("broker", (BrokerError,)),
    ("cache", (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)),
)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Keel is briefly unavailable</title></head>
<body><h1>Keel is briefly unavailable</h1>
<p>A service Keel depends on (the {service}) is not answering. Try again in a few seconds.</p></body></html>
"""


def outage_of(exc: BaseException | None) -> str | None:
    """The service an exception says is away ("database", "broker", "cache"), or None."""
    for service, kinds in OUTAGES:
        if isinstance(exc, kinds):
            return service
    return None


def outage_response(request, service: str) -> HttpResponse:
    retry_after = str(settings.KEEL_OUTAGE_RETRY_AFTER_SECONDS)
    reason = f"The {service} is unavailable; try again in {retry_after} seconds."
    if request.path.startswith("/api/"):
        response = JsonResponse({"status": 503, "errors": [{"field": None, "reason": reason}]}, status=503)
    else:
        response = HttpResponse(PAGE.format(service=service), status=503)
    response["Retry-After"] = retry_after
    return response


class OutageMiddleware:
    """A view's outage error becomes a 503 (the API's own views answer theirs)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        service = outage_of(exception)
        if service is None:
            return None
        logger.warning("%s %s: the %s is unavailable (%s)", request.method, request.path, service,
                       type(exception).__name__)  # fmt: skip
        return outage_response(request, service)


def server_error(request) -> HttpResponse:
    """``handler500``: Django calls it while handling the exception, so the
    exception is at hand; an outage answers 503, anything else Django's 500."""
    service = outage_of(sys.exc_info()[1])
    if service is not None:
        return outage_response(request, service)
    return defaults.server_error(request)

"""GET /metrics: Prometheus's text format, for a scraper holding the metrics
token or calling from an allow-listed network; 404 when neither is set (the
endpoint is off), 403 otherwise. The token is compared in constant time and
never logged (the refused-access log names the path only)."""

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, HttpResponseNotFound
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from config.observability.collector import metrics_registry
from config.security import client_ip


def _token_matches(request: HttpRequest) -> bool:
    expected = settings.KEEL_METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def _address_allowed(request: HttpRequest) -> bool:
    try:
        address = ipaddress.ip_address(client_ip(request))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network) for network in settings.KEEL_METRICS_ALLOWED_NETWORKS)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not settings.KEEL_METRICS_TOKEN and not settings.KEEL_METRICS_ALLOWED_NETWORKS:
        return HttpResponseNotFound("Metrics are off: set KEEL_METRICS_TOKEN or KEEL_METRICS_ALLOWED_NETWORKS.\n")
    if not (_token_matches(request) or _address_allowed(request)):
        return HttpResponseForbidden("A metrics token (Authorization: Bearer ...) or an allowed address is needed.\n")
    return HttpResponse(generate_latest(metrics_registry()), content_type=CONTENT_TYPE_LATEST)

"""Every API error is JSON of one shape:

    {"status": 400, "errors": [{"field": "input.subject", "reason": "..."}]}

``field`` names the part of the request at fault (a body field, a query
parameter, ``body`` for an unreadable body) or is null when the whole request
is refused (credentials, rights, a paused pipeline, the rate limit).
"""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.views import exception_handler

from pipelines.integration.api.parsers import RequestTooLarge
from pipelines.runs.engine import RunRefused


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def _flatten(detail, field: str | None) -> list[dict]:
    if isinstance(detail, dict):
        return [e for key, value in detail.items() for e in _flatten(value, _join(field, key))]
    if isinstance(detail, list):
        return [e for item in detail for e in _flatten(item, field)]
    return [{"field": field, "reason": str(detail)}]


def _join(field: str | None, key) -> str | None:
    if key in ("non_field_errors", "__all__"):
        return field
    return f"{field}.{key}" if field else str(key)


def _split_input_path(error: dict) -> dict:
    # run_start reports schema problems as "input.customer.email: why"; keep the path as the field.
    reason = error["reason"]
    if error["field"] == "input" and reason.startswith("input") and ": " in reason:
        path, _, why = reason.partition(": ")
        return {"field": path, "reason": why}
    return error


def _errors(exc: exceptions.APIException) -> list[dict]:
    field = getattr(exc, "field", None)
    if isinstance(exc, exceptions.ParseError):
        field = "body"
    elif isinstance(exc, exceptions.UnsupportedMediaType):
        field = "Content-Type"
    return [_split_input_path(e) for e in _flatten(exc.detail, field)]


def api_exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    elif isinstance(exc, RequestDataTooBig | TooManyFieldsSent):
        # Django's own limits on form fields in a multipart body.
        exc = RequestTooLarge(str(exc)) if isinstance(exc, RequestDataTooBig) else exceptions.ParseError(str(exc))
    elif isinstance(exc, RunRefused):
        exc = Conflict(str(exc))
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    response = exception_handler(exc, context)
    if response is None:
        return None  # not an API error: Django's 500 handling (and its logging) takes over
    response.data = {"status": response.status_code, "errors": _errors(exc)}
    return response


def error_response(status_code: int, reason: str, field: str | None = None) -> JsonResponse:
    return JsonResponse({"status": status_code, "errors": [{"field": field, "reason": reason}]}, status=status_code)


@csrf_exempt  # a POST to no endpoint is a 404, not a CSRF failure: the API uses no cookies
def not_found(request, *args, **kwargs) -> JsonResponse:
    """Any other path under /api/: JSON, like every API answer."""
    return error_response(404, f"There is no API endpoint at {request.path}.")

import json

from django.conf import settings
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser


class RequestTooLarge(APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "too_large"


def body_limit() -> int:
    return settings.KEEL_API_MAX_BODY_BYTES


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser reads the whole stream, however long (Django's upload
    limit does not apply to it); this one stops at the body limit, and answers
    nesting too deep to parse as a parse error rather than a crash."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = body_limit()
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        except UnicodeDecodeError:
            raise ParseError("The body is not UTF-8.") from None
        except RecursionError:
            raise ParseError("The JSON is nested too deeply.") from None
        except ValueError as exc:
            raise ParseError(f"Malformed JSON: {exc}") from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")

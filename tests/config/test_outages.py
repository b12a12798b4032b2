"""config/outages.py: an error that says the database, the broker or the
cache is away answers 503 with Retry-After, JSON under /api/ and a plain page
elsewhere, whether a view, an API view or a middleware raised it; any other
error is still Django's 500.

The errors are the ones the drivers raise (tests/pipelines/runs/test_outages.py
stops real servers under gunicorn); here a view of the test's own raises
each, to reach every route to the answer.
"""

import pytest
import redis.exceptions
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from django.test import Client
from django.urls import path
from kombu.exceptions import OperationalError as BrokerError
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

ERRORS = {
    "database": OperationalError("connection to server at 127.0.0.1 failed: Connection refused"),
    "database-interface": InterfaceError("connection already closed"),
    "broker": BrokerError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    "cache": redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379."),
    "bug": ZeroDivisionError("division by zero"),
}
SERVICES = {"database": "database", "database-interface": "database", "broker": "broker", "cache": "cache"}


def page(request, kind):
    raise ERRORS[kind]


class ApiPage(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    def get(self, request, kind):
        raise ERRORS[kind]


class RaisingMiddleware:
    """Raises before any view runs, as a session or user lookup does when the database is away."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if kind := request.headers.get("X-Raise"):
            raise ERRORS[kind]
        return self.get_response(request)


urlpatterns = [
    path("api/v1/fail/<str:kind>", ApiPage.as_view()),
    path("fail/<str:kind>", page),
    path("fine", lambda request: HttpResponse("fine")),
]
handler500 = "config.outages.server_error"


@pytest.fixture
def client(settings):
    settings.ROOT_URLCONF = __name__
    settings.DEBUG = False
    settings.KEEL_OUTAGE_RETRY_AFTER_SECONDS = 7
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}.RaisingMiddleware"]
    return Client(raise_request_exception=False)


@pytest.mark.parametrize("kind", sorted(SERVICES))
def test_an_api_view_answers_json_503_with_retry_after_when_a_service_is_away(client, db, kind):
    response = client.get(f"/api/v1/fail/{kind}")
    assert response.status_code == 503
    assert response["Retry-After"] == "7"
    assert response.json() == {
        "status": 503,
        "errors": [{"field": None, "reason": f"The {SERVICES[kind]} is unavailable; try again in 7 seconds."}],
    }
    assert "127.0.0.1" not in response.content.decode()  # the driver's text (an address) is never shown


@pytest.mark.parametrize("kind", sorted(SERVICES))
def test_a_page_answers_a_plain_503_when_a_service_is_away(client, db, kind):
    response = client.get(f"/fail/{kind}")
    assert response.status_code == 503
    assert response["Retry-After"] == "7"
    assert response["Content-Type"].startswith("text/html")
    body = response.content.decode()
    assert "briefly unavailable" in body and SERVICES[kind] in body
    assert "Traceback" not in body and "127.0.0.1" not in body


@pytest.mark.parametrize("path", ["/fine", "/api/v1/fail/bug"])
def test_a_middleware_that_loses_the_database_answers_503_too(client, db, path):
    response = client.get(path, headers={"X-Raise": "database"})
    assert response.status_code == 503 and response["Retry-After"] == "7"
    if path.startswith("/api/"):
        assert response.json()["status"] == 503


def test_any_other_error_is_still_a_500(client, db):
    assert client.get("/fail/bug").status_code == 500
    assert client.get("/api/v1/fail/bug").status_code == 500
    assert client.get("/fine", headers={"X-Raise": "bug"}).status_code == 500

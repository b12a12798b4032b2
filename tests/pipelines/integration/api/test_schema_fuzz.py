"""Schemathesis against /api/schema/: every operation, with inputs generated
from the schema (and against it), never answers 5xx, and none succeeds
without valid credentials."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from config.wsgi import application
from pipelines.models import Run

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture(autouse=True)
def _keep_the_test_transaction(credentials):
    # The WSGI handler closes the database connection after each request, as
    # it should in production; inside a test's transaction it must not. (After
    # the credentials fixture: Django's test client, which it uses, reconnects
    # the handler after each of its own requests.)
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def credentials(api_for, make_token, author, acme_pipeline, superuser):
    _, plain = make_token(author, workspace=acme_pipeline.workspace)
    revoked, revoked_plain = make_token(author, workspace=acme_pipeline.workspace, name="old")
    from pipelines.integration.tokens import token_revoke

    token_revoke(token=revoked, actor=superuser)
    run_id = api_for(plain).post_run(acme_pipeline.slug).json()["id"]
    return {"token": plain, "revoked": revoked_plain, "slug": acme_pipeline.slug, "run_id": run_id}


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_operation_fails_with_5xx_or_succeeds_without_credentials(case, credentials):
    authorised = {"Authorization": f"Bearer {credentials['token']}"}
    # As generated (mostly unknown pipelines and runs), then aimed at ones that exist.
    variants = [dict(case.path_parameters or {})]
    if case.path_parameters and "slug" in case.path_parameters:
        variants.append({**case.path_parameters, "slug": credentials["slug"]})
    if case.path_parameters and "id" in case.path_parameters:
        variants.append({**case.path_parameters, "id": credentials["run_id"]})
    for path_parameters in variants:
        case.path_parameters = path_parameters or case.path_parameters
        response = case.call(headers=authorised)
        assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
        if response.content:
            assert response.headers["content-type"][0].startswith("application/json"), response.text[:300]
        for headers in ({}, {"Authorization": f"Bearer {credentials['revoked']}"}, {"Authorization": "Bearer x"}):
            anonymous = case.call(headers=headers)
            # 401 wherever an endpoint answers; a path no endpoint matches is 404 before credentials matter.
            assert anonymous.status_code in (401, 404, 405, 413), (case.as_curl_command(), anonymous.status_code)
            assert "results" not in anonymous.text and '"steps"' not in anonymous.text
    assert Run.objects.filter(actor__isnull=True).count() == 0

"""Rollback, pause, resume and "what was live at T" over the API: one call
each, as the token's user, with the services' own refusals as JSON."""

import json

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from pipelines.models import Deployment
from pipelines.releases.cut import release_cut
from tests.releasing import classifier_pipeline, prompt_edit, release_to_production


@pytest.fixture
def pipeline(acme, superuser):
    """#1 approved and once live, #2 never approved, #3 approved and live."""
    pipeline = classifier_pipeline(acme, actor=superuser)
    for n in range(3):
        prompt_edit(pipeline, actor=superuser, body=f"Version {n}: {{{{ subject }}}}")
        release = release_cut(pipeline=pipeline, actor=superuser, notes=f"v{n}")
        if n != 1:
            release_to_production(release)
    return pipeline


@pytest.fixture
def operator_api(pipeline, operator, make_token, api_for):
    """An operator (deploy right on the workspace) with a token for the pipeline."""
    return api_for(make_token(operator, pipeline=pipeline)[1])


def _post(api, path: str, body: dict):
    return api.client.post(path, json.dumps(body), content_type="application/json", headers=api.headers)


def _live(pipeline) -> int:
    return Deployment.objects.get(pipeline=pipeline, environment="production").release.number


def test_one_call_rolls_back_to_an_earlier_approved_release(pipeline, operator_api):
    response = _post(operator_api, f"/api/v1/pipelines/{pipeline.slug}/rollback", {"to": 1, "reason": "bad drafts"})
    assert response.status_code == 200, response.json()
    assert response.json()["release"] == 1 and _live(pipeline) == 1
    assert AuditEvent.objects.filter(action__startswith="deployment.", pipeline_id=pipeline.pk).exists()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"to": 2}, "never approved"),
        ({"to": 3}, "not earlier"),
        ({"to": 9}, "no release #9"),
        ({"to": "one"}, "integer"),
        ({}, "required"),
    ],
)
def test_a_rollback_to_a_release_that_cannot_go_live_is_refused_and_changes_nothing(
    pipeline, operator_api, body, reason
):
    response = _post(operator_api, f"/api/v1/pipelines/{pipeline.slug}/rollback", body)
    assert response.status_code == 400, response.json()
    (error,) = response.json()["errors"]
    assert error["field"] == "to" and reason in error["reason"]
    assert _live(pipeline) == 3


def test_pause_refuses_new_runs_with_the_reason_until_resumed(pipeline, operator_api, superuser, make_token, api_for):
    response = _post(operator_api, f"/api/v1/pipelines/{pipeline.slug}/pause", {"reason": "leaking prices"})
    assert response.status_code == 200 and response.json()["paused"] is True

    starter = api_for(make_token(superuser, pipeline=pipeline, name="starter")[1])
    refused = starter.post_run(pipeline.slug, {"input": {"subject": "Hello"}})
    assert refused.status_code == 409 and "leaking prices" in refused.json()["errors"][0]["reason"]

    again = _post(operator_api, f"/api/v1/pipelines/{pipeline.slug}/pause", {"reason": "still"})
    assert again.status_code == 409  # already paused: a state refusal
    resumed = _post(operator_api, f"/api/v1/pipelines/{pipeline.slug}/resume", {})
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    assert starter.post_run(pipeline.slug, {"input": {"subject": "Hello"}}).status_code == 201


def test_pause_needs_a_reason_and_the_deploy_right(pipeline, operator_api, auditor, make_token, api_for):
    missing = _post(operator_api, f"/api/v1/pipelines/{pipeline.slug}/pause", {})
    assert missing.status_code == 400 and missing.json()["errors"][0]["field"] == "reason"
    # An auditor sees the pipeline but may not deploy or pause it.
    auditor_api = api_for(make_token(auditor, pipeline=pipeline, name="auditor")[1])
    refused = _post(auditor_api, f"/api/v1/pipelines/{pipeline.slug}/pause", {"reason": "x"})
    assert refused.status_code == 403, refused.json()
    assert not Deployment.objects.get(pipeline=pipeline, environment="production").paused


def test_as_of_answers_what_was_live_then(pipeline, operator_api):
    before = timezone.now()
    _post(operator_api, f"/api/v1/pipelines/{pipeline.slug}/rollback", {"to": 1})
    then = operator_api.get(f"/api/v1/pipelines/{pipeline.slug}/as-of", {"at": before.isoformat()})
    now = operator_api.get(f"/api/v1/pipelines/{pipeline.slug}/as-of", {"at": timezone.now().isoformat()})
    assert then.status_code == 200 and then.json()["environments"]["production"]["release"] == 3
    assert now.json()["environments"]["production"]["release"] == 1
    assert "steps" in now.json()["environments"]["production"]["configuration"]
    bad = operator_api.get(f"/api/v1/pipelines/{pipeline.slug}/as-of", {"at": "last tuesday"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "at"


def test_a_token_for_another_pipeline_reaches_none_of_it(pipeline, globex_pipeline, superuser, make_token, api_for):
    api = api_for(make_token(superuser, pipeline=globex_pipeline, name="globex system")[1])
    for path, body in [("rollback", {"to": 1}), ("pause", {"reason": "x"}), ("resume", {})]:
        response = _post(api, f"/api/v1/pipelines/{pipeline.slug}/{path}", body)
        assert response.status_code == 404, (path, response.json())
    assert api.get(f"/api/v1/pipelines/{pipeline.slug}/as-of", {"at": "2026-01-01T00:00Z"}).status_code == 404
    assert _live(pipeline) == 3 and not Deployment.objects.get(pipeline=pipeline, environment="production").paused

"""The runs API over HTTP: starting runs (idempotently), reading them, and the
JSON errors for everything a client can get wrong."""

import json

import pytest

from audit.models import AuditEvent
from pipelines.models import Deployment, Run
from tests.pipelines.integration.api.conftest import TICKET


@pytest.fixture
def api(api_for, make_token, author, acme_pipeline):
    _, plain = make_token(author, workspace=acme_pipeline.workspace)
    return api_for(plain)


def test_it_starts_a_run_and_answers_201_with_the_run(api, acme_pipeline, author):
    response = api.post_run(acme_pipeline.slug, {"input": TICKET, "source": "crm"})
    assert response.status_code == 201, response.content
    body = response.json()
    run = Run.objects.get(pk=body["id"])
    assert (run.trigger, run.source, run.actor, run.input) == ("api", "crm", author, TICKET)
    assert body["pipeline"] == acme_pipeline.slug and body["status"] == "queued" and body["steps"] == []
    started = AuditEvent.objects.get(action="run.started", object_id=str(run.pk))
    assert started.actor_name == "author"


def test_a_repeated_idempotency_key_answers_200_with_the_same_run(api, acme_pipeline):
    first = api.post_run(acme_pipeline.slug, {"input": TICKET, "idempotency_key": "order-17"})
    again = api.post_run(acme_pipeline.slug, {"input": TICKET, "idempotency_key": "order-17"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert Run.objects.count() == 1


def test_a_repeated_key_with_another_input_is_a_conflict(api, acme_pipeline):
    api.post_run(acme_pipeline.slug, {"input": TICKET, "idempotency_key": "order-18"})
    response = api.post_run(acme_pipeline.slug, {"input": {"subject": "other"}, "idempotency_key": "order-18"})
    assert response.status_code == 409
    assert "different input" in response.json()["errors"][0]["reason"]
    assert Run.objects.count() == 1


def test_an_input_against_the_schema_is_400_naming_the_field(api, acme_pipeline):
    response = api.post_run(acme_pipeline.slug, {"input": {"subject": 12}})
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors[0]["field"] == "input.subject" and "string" in errors[0]["reason"]
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input": [1, 2]}, "input"),
        ({"input": {"subject": "a\u0000b"}}, "input.subject"),
        ({"input": TICKET, "idempotency_key": "k" * 201}, "idempotency_key"),
        ({}, "input"),
    ],
)
def test_bad_fields_are_400_naming_the_field(api, acme_pipeline, body, field):
    response = api.post_run(acme_pipeline.slug, body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    ("raw_input", "field", "reason"),
    [
        ('{"amount": 1e21}', "input.amount", "beyond ±9007199254740991"),
        ('{"amount": 9007199254740993}', "input.amount", "beyond ±9007199254740991"),
        ('{"amount": 1e400}', "input.amount", "not a finite number"),
        ('{"note": "\\ud800"}', "input.note", "lone surrogate"),
    ],
)
def test_a_number_or_text_keel_cannot_store_as_hashed_is_400_naming_the_field(
    api, acme_pipeline, raw_input, field, reason
):
    body = '{"input": {"subject": "a parcel", "extra": ' + raw_input + "}}"
    response = api.client.post(
        f"/api/v1/pipelines/{acme_pipeline.slug}/runs", body, content_type="application/json", headers=api.headers
    )
    assert response.status_code == 400, response.content
    (error,) = response.json()["errors"]
    assert error["field"] == field.replace("input.", "input.extra.") and reason in error["reason"]
    assert not Run.objects.exists()


def test_a_paused_pipeline_is_409(api, acme_pipeline):
    Deployment.objects.filter(pipeline=acme_pipeline).update(paused=True)
    response = api.post_run(acme_pipeline.slug)
    assert response.status_code == 409
    assert "paused" in response.json()["errors"][0]["reason"]


def test_a_pipeline_with_nothing_live_is_409(api_for, make_token, author, acme_config):
    _, plain = make_token(author, pipeline=acme_config["pipeline"])
    response = api_for(plain).post_run(acme_config["pipeline"].slug)
    assert response.status_code == 409
    assert "no live release" in response.json()["errors"][0]["reason"]


def test_malformed_json_is_400_about_the_body(api, acme_pipeline):
    response = api.client.post(
        f"/api/v1/pipelines/{acme_pipeline.slug}/runs", '{"input": ', content_type="application/json",
        headers=api.headers,
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "body"


def test_a_wrong_content_type_is_415(api, acme_pipeline):
    response = api.client.post(
        f"/api/v1/pipelines/{acme_pipeline.slug}/runs", "subject=x", content_type="application/x-www-form-urlencoded",
        headers=api.headers,
    )  # fmt: skip
    assert response.status_code == 415
    assert response.json()["errors"][0]["field"] == "Content-Type"


def test_an_oversized_body_is_413(api, acme_pipeline, settings):
    settings.KEEL_API_MAX_BODY_BYTES = 1000
    response = api.post_run(acme_pipeline.slug, {"input": {"subject": "x" * 2000}})
    assert response.status_code == 413
    assert "larger than 1000 bytes" in response.json()["errors"][0]["reason"]
    assert not Run.objects.exists()


def test_an_unknown_pipeline_is_404(api):
    response = api.post_run("no-such-pipeline")
    assert response.status_code == 404
    assert "no-such-pipeline" in response.json()["errors"][0]["reason"]


def test_an_unknown_api_path_is_json_404(api):
    response = api.get("/api/v2/anything")
    assert response.status_code == 404 and response.json()["status"] == 404


def test_a_run_reads_back_with_its_steps_gate_and_deliveries(api, acme_pipeline, django_capture_on_commit_callbacks):
    from pipelines.runs.engine import run_execute

    created = api.post_run(acme_pipeline.slug).json()
    run_execute(created["id"])
    body = api.get(f"/api/v1/runs/{created['id']}").json()
    assert [s["kind"] for s in body["steps"]] == ["model", "gate"]
    assert body["gate"] is not None and "passed" in body["gate"]
    assert body["deliveries"] == [] and body["status"] in ("completed", "waiting_review")


def test_the_list_filters_by_pipeline_status_and_time_and_pages(api, acme_pipeline):
    ids = [api.post_run(acme_pipeline.slug, {"input": {"subject": f"n{i}"}}).json()["id"] for i in range(3)]
    Run.objects.filter(pk=ids[0]).update(status=Run.Status.FAILED)
    page = api.get("/api/v1/runs", {"page_size": 2}).json()
    assert [r["id"] for r in page["results"]] == [ids[2], ids[1]] and page["next"]
    rest = api.client.get(page["next"], headers=api.headers).json()
    assert [r["id"] for r in rest["results"]] == [ids[0]]
    assert [r["id"] for r in api.get("/api/v1/runs", {"status": "failed"}).json()["results"]] == [ids[0]]
    assert api.get("/api/v1/runs", {"pipeline": "other"}).json()["results"] == []
    created = Run.objects.get(pk=ids[1]).created_at.isoformat()
    after = api.get("/api/v1/runs", {"created_after": created}).json()["results"]
    assert ids[1] in [r["id"] for r in after] and ids[0] not in [r["id"] for r in after]


def test_a_bad_filter_is_400_naming_the_parameter(api):
    response = api.get("/api/v1/runs", {"status": "sleeping"})
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "status"


def test_the_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/", headers={"Accept": "application/json"})
    assert schema.status_code == 200
    paths = json.loads(schema.content)["paths"]
    assert {"/api/v1/pipelines/{slug}/runs", "/api/v1/runs/{id}", "/api/v1/runs"} <= set(paths)
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in docs.content.decode()  # served here, not from a CDN

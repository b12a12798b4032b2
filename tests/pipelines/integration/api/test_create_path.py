"""The run-creation path's shortcuts answer exactly as the long way would."""

import json

from guardian.shortcuts import assign_perm, remove_perm

from pipelines.integration.api.selectors import pipeline_for_token, pipelines_for_token, run_detail_for_token
from pipelines.integration.api.serializers import RunSerializer
from pipelines.models import Deployment, Run, ServiceToken
from tests.pipelines.integration.api.conftest import TICKET


def test_the_create_answer_is_the_run_serializers_answer(api_for, make_token, author, acme_pipeline):
    token, plain = make_token(author, pipeline=acme_pipeline)
    api = api_for(plain)
    created = api.post_run(acme_pipeline.slug, {"input": TICKET, "idempotency_key": "k-1", "source": "crm"})
    assert created.status_code == 201, created.content
    body = created.json()
    fresh = json.loads(json.dumps(RunSerializer(run_detail_for_token(token=token, run_id=body["id"])).data))
    assert body == fresh
    assert api.get(f"/api/v1/runs/{body['id']}").json() == fresh


def test_a_repeated_key_returns_its_run_even_once_the_pipeline_is_paused(api_for, make_token, author, acme_pipeline):
    _, plain = make_token(author, pipeline=acme_pipeline)
    api = api_for(plain)
    first = api.post_run(acme_pipeline.slug, {"input": TICKET, "idempotency_key": "k-2"})
    assert first.status_code == 201
    Deployment.objects.filter(pipeline=acme_pipeline).update(paused=True)
    again = api.post_run(acme_pipeline.slug, {"input": TICKET, "idempotency_key": "k-2"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    fresh = api.post_run(acme_pipeline.slug, {"input": TICKET, "idempotency_key": "k-3"})
    assert fresh.status_code == 409 and "paused" in fresh.json()["errors"][0]["reason"]
    assert Run.objects.count() == 1


def test_a_repeated_key_returns_its_run_when_the_deployment_is_gone(author, acme_pipeline):
    from pipelines.runs.engine import run_start

    run, created = run_start(pipeline=acme_pipeline, input=TICKET, actor=author, trigger="api", idempotency_key="k-4")
    assert created
    Deployment.objects.filter(pipeline=acme_pipeline).delete()
    again, created = run_start(pipeline=acme_pipeline, input=TICKET, actor=author, trigger="api", idempotency_key="k-4")
    assert (again.pk, created) == (run.pk, False)


def test_a_pipeline_token_does_not_reach_another_pipeline_its_user_sees(
    api_for, make_token, superuser, acme_pipeline, globex_pipeline
):
    _, plain = make_token(superuser, pipeline=acme_pipeline)
    response = api_for(plain).post_run(globex_pipeline.slug)
    assert response.status_code == 404 and not Run.objects.exists()


def test_a_run_created_with_a_pipeline_token_reads_the_object_rights_with_the_token(
    api_for, make_token, author, acme_pipeline
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _, plain = make_token(author, pipeline=acme_pipeline)
    api = api_for(plain)
    assert api.post_run(acme_pipeline.slug, {"input": TICKET, "idempotency_key": "k-5"}).status_code == 201
    with CaptureQueriesContext(connection) as queries:
        assert api.post_run(acme_pipeline.slug, {"input": TICKET, "idempotency_key": "k-6"}).status_code == 201
    rights = [q["sql"] for q in queries.captured_queries if "auth_permission" in q["sql"]]
    # The view right (finding the pipeline) and run_start's change right ride with the token read.
    assert len(rights) == 1 and "key_sha256" in rights[0]


def test_a_token_whose_user_may_see_but_not_change_the_pipeline_cannot_start_runs(
    api_for, make_token, acme_pipeline, auditor
):
    _, plain = make_token(auditor, pipeline=acme_pipeline)
    api = api_for(plain)
    assert api.get("/api/v1/runs").status_code == 200  # the token reaches the pipeline
    response = api.post_run(acme_pipeline.slug)
    assert response.status_code == 403 and "change right" in response.json()["errors"][0]["reason"]
    assert not Run.objects.exists()


def test_the_pipeline_a_token_names_is_found_as_the_object_permission_filter_finds_it(
    make_token, author, auditor, operator, acme_pipeline, globex_pipeline
):
    tokens = [make_token(user, workspace=acme_pipeline.workspace)[0] for user in (author, auditor, operator)]
    tokens.append(make_token(author, pipeline=acme_pipeline)[0])
    own_view = "pipelines.view_pipeline"
    assign_perm(own_view, auditor, globex_pipeline)  # a right outside the tokens' workspace

    def answers() -> list[bool]:
        found = []
        for stored in tokens:
            token = ServiceToken.objects.select_related("user").get(pk=stored.pk)  # no pipeline read with it
            for slug in (acme_pipeline.slug, globex_pipeline.slug, "no-such-pipeline"):
                long_way = pipelines_for_token(token=token).filter(slug=slug).first()
                assert pipeline_for_token(token=token, slug=slug) == long_way, (token.user, slug)
                found.append(long_way is not None)
        return found

    assert any(answers())
    # Rights withdrawn: a person made inactive, a workspace role taken away.
    type(operator).objects.filter(pk=operator.pk).update(is_active=False)
    author.groups.clear()
    remove_perm(own_view, auditor, globex_pipeline)
    found = answers()
    assert any(found) and not all(found)

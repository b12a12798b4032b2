"""Release control through the admin's actions: each asks for what it needs,
calls its service, and shows a refusal with its reason."""

import pytest
from django.urls import reverse

from pipelines.evaluation.services import evaluation_execute
from pipelines.models import Deployment, Evaluation, EvaluationCase, Release
from pipelines.releases.approval import release_state
from pipelines.releases.cut import release_cut
from tests.releasing import classifier_pipeline, prompt_edit

RELEASES = "admin:pipelines_release_changelist"
DEPLOYMENTS = "admin:pipelines_deployment_changelist"


@pytest.fixture
def pipeline(acme, superuser):
    pipeline = classifier_pipeline(acme, actor=superuser)
    EvaluationCase.objects.create(pipeline=pipeline, name="parcel", input={"subject": "Parcel tracking stuck"},
                                  expected_label="shipping")  # fmt: skip
    return pipeline


def _act(client, url, action, pks, follow=True, **data):
    return client.post(reverse(url), {"action": action, "_selected_action": pks, **data}, follow=follow)


def test_a_change_goes_from_submission_to_production_through_the_admin(client, pipeline, author, lead, operator):
    prompt_edit(pipeline, actor=author, body="Ticket: {{ subject }}")
    release = release_cut(pipeline=pipeline, actor=author)
    client.force_login(author)
    asked = _act(client, RELEASES, "submit_releases", [release.pk], follow=False)
    assert asked.status_code == 200 and "notes" in asked.content.decode()
    _act(client, RELEASES, "submit_releases", [release.pk], apply="1", notes="Adds a preamble.")
    assert release_state(release) == "submitted"
    listing = client.get(reverse(RELEASES)).content.decode()
    assert '<td class="field-state">submitted</td>' in listing
    page = _act(client, RELEASES, "approve_releases", [release.pk]).content.decode()
    assert "author of a release cannot approve" in page or "approve right" in page
    client.force_login(lead)
    _act(client, RELEASES, "approve_releases", [release.pk])
    page = _act(client, RELEASES, "evaluate_releases", [release.pk]).content.decode()
    assert "evaluation of 1 cases queued" in page
    evaluation = Evaluation.objects.get(release=release)
    assert (evaluation.status, evaluation.done, evaluation.total) == ("queued", 0, 1)
    evaluation_execute(evaluation.pk)  # as the worker's task does
    page = client.get(reverse("admin:pipelines_evaluation_change", args=[evaluation.pk])).content.decode()
    assert '<div class="readonly">1 of 1 cases</div>' in page and '<div class="readonly">Done</div>' in page
    client.force_login(operator)
    _act(client, RELEASES, "deploy_production", [release.pk])
    deployment = Deployment.objects.get(pipeline=pipeline, environment="production")
    assert deployment.release == release
    # Pause from the pipeline list (operators hold the deploy right), then resume.
    client.force_login(lead)
    _act(client, "admin:pipelines_pipeline_changelist", "pause_pipelines", [pipeline.pk], apply="1", reason="drill")
    assert Deployment.objects.get(pk=deployment.pk).paused
    _act(client, DEPLOYMENTS, "unpause_pipelines", [deployment.pk])
    assert not Deployment.objects.get(pk=deployment.pk).paused


def test_a_refused_production_deploy_shows_why(client, pipeline, author, operator):
    release = release_cut(pipeline=pipeline, actor=author)
    client.force_login(operator)
    page = _act(client, RELEASES, "deploy_production", [release.pk]).content.decode()
    assert "cannot go to production" in page and "not approved" in page
    assert not Deployment.objects.filter(release=release).exists()


def test_the_review_page_of_another_clients_release_is_not_found(client, globex_config, superuser, lead):
    theirs = release_cut(pipeline=globex_config["pipeline"], actor=superuser)
    client.force_login(lead)
    assert client.get(reverse("admin:pipelines_release_review", args=[theirs.pk])).status_code == 404
    assert Release.objects.filter(pk=theirs.pk).exists()


def test_rollback_to_a_number_asks_for_it_and_refuses_a_bad_one(client, pipeline, author, operator):
    from tests.releasing import release_to_production

    release_to_production(release_cut(pipeline=pipeline, actor=author))
    deployment = Deployment.objects.get(pipeline=pipeline, environment="production")
    client.force_login(operator)
    asked = _act(client, DEPLOYMENTS, "rollback_to", [deployment.pk], follow=False)
    assert "Release number" in asked.content.decode()
    page = _act(client, DEPLOYMENTS, "rollback_to", [deployment.pk], apply="1", to="7").content.decode()
    assert "has no release #7" in page

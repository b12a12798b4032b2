"""The pipeline's page links to its runs, releases, deployments, review queue
and metrics, and they link back; the runs list has named columns, status
badges and the failure reason; the permissions page lists inherited rights
with where they come from."""

from django.urls import reverse

from pipelines.models import Run
from tests.reviews.conftest import gated_pipeline, hold


def test_the_pipeline_page_links_to_what_belongs_to_it(client, lead, acme, superuser):
    pipeline = gated_pipeline(acme, superuser=superuser, author=None)
    hold(pipeline)
    client.force_login(lead)
    html = client.get(reverse("admin:pipelines_pipeline_change", args=[pipeline.pk])).content.decode()
    for url in (
        f"{reverse('admin:pipelines_run_changelist')}?pipeline__id__exact={pipeline.pk}",
        f"{reverse('admin:pipelines_release_changelist')}?pipeline__id__exact={pipeline.pk}",
        f"{reverse('admin:pipelines_deployment_changelist')}?pipeline__id__exact={pipeline.pk}",
        f"{reverse('reviews-queue')}?pipeline={pipeline.slug}",
        reverse("reviews-metrics", args=[pipeline.slug]),
    ):
        assert f'href="{url}"' in html.replace("&amp;", "&")
    assert "Runs (1)" in html
    # Each linked list answers, filtered to the pipeline.
    runs = client.get(reverse("admin:pipelines_run_changelist"), {"pipeline__id__exact": pipeline.pk})
    assert runs.status_code == 200 and runs.context["cl"].result_count == 1
    releases = client.get(reverse("admin:pipelines_release_changelist"), {"pipeline__id__exact": pipeline.pk})
    assert releases.status_code == 200 and releases.context["cl"].result_count == pipeline.releases.count()
    # And back: the lists link to the pipeline.
    assert f'href="{reverse("admin:pipelines_pipeline_change", args=[pipeline.pk])}"' in runs.content.decode()


def test_the_runs_list_has_named_columns_badges_and_the_failure_reason(client, lead, acme, superuser):
    pipeline = gated_pipeline(acme, superuser=superuser, author=None)
    held, failed = hold(pipeline), hold(pipeline, subject="Second")
    Run.objects.filter(pk=failed.pk).update(status=Run.Status.FAILED, failure_reason="Model timed out after 30 s")
    client.force_login(lead)
    response = client.get(reverse("admin:pipelines_run_changelist"))
    headers = [header["text"] for header in response.context["result_headers"]]
    assert headers[1:] == ["Run", "Pipeline", "Status", "Trigger", "Failure reason", "Finished"]
    html = response.content.decode()
    assert '<span class="keel-badge keel-badge-failed">Failed</span>' in html
    assert '<span class="keel-badge keel-badge-waiting_review">Waiting review</span>' in html
    assert "Model timed out after 30 s" in html
    assert "Command line" in html and ">Cli<" not in html and ">PK<" not in html
    assert f"#{held.pk}" in html


def test_the_permissions_page_lists_inherited_rights_with_their_source(client, superuser, lead, author, acme_config):
    pipeline = acme_config["pipeline"]
    client.force_login(superuser)
    response = client.get(reverse("admin:pipelines_pipeline_permissions", args=[pipeline.pk]))
    assert response.status_code == 200
    rows = {(row.holder, row.kind): row for row in response.context["inherited_rights"]}
    assert rows[("lead", "user")].source == "workspace Acme"
    assert "Approve releases" in rows[("lead", "user")].rights and "Change" in rows[("lead", "user")].rights
    assert "Approve releases" not in rows[("author", "user")].rights
    assert rows[(superuser.get_username(), "superuser")].source == "superuser status"
    html = response.content.decode()
    assert "Rights that reach this pipeline from elsewhere" in html
    assert "No user holds a right on this pipeline itself; the rights above reach it from elsewhere." in html
    assert "USERNAME_FIELD" not in html and "User identification" not in html


def test_a_prompt_lists_only_the_rights_that_mean_something_on_it(client, superuser, lead, acme_config):
    client.force_login(superuser)
    response = client.get(reverse("admin:pipelines_prompttemplate_permissions", args=[acme_config["prompt"].pk]))
    rows = {row.holder: row for row in response.context["inherited_rights"] if row.kind == "user"}
    assert rows["lead"].rights == ["View", "Change"]

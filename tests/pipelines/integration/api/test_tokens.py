"""Service tokens: stored only as a hash, scoped, revocable, and every API
endpoint holding both the token's scope and its user's object rights."""

import hashlib
import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit.context import acting_as
from audit.models import AuditEvent
from pipelines.integration.tokens import token_revoke
from pipelines.models import Run, ServiceToken
from tests.pipelines.integration.api.conftest import TICKET


def test_a_token_is_never_stored_in_plain_text(make_token, author, acme_pipeline):
    token, plain = make_token(author, pipeline=acme_pipeline)
    assert plain.startswith(f"keel_{token.prefix}_") and len(plain) > 40
    assert token.key_sha256 == hashlib.sha256(plain.encode()).hexdigest()
    # keel_<hex prefix>_<secret>: the secret itself may contain "_" (token_urlsafe).
    secret = plain.split("_", 2)[2]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM pipelines_servicetoken")
        rows = cursor.fetchall()
    assert rows and not any(secret in str(value) for row in rows for value in row)
    assert not any(secret in event.payload for event in AuditEvent.objects.all())
    created = AuditEvent.objects.get(action="token.created")
    assert created.payload_data["prefix"] == token.prefix and created.payload_data["pipeline"] == acme_pipeline.slug


def test_a_pipeline_token_cannot_read_or_start_another_pipelines_runs(
    api_for, make_token, superuser, acme_pipeline, globex_pipeline
):
    _, acme_plain = make_token(superuser, pipeline=acme_pipeline)
    _, globex_plain = make_token(superuser, pipeline=globex_pipeline)
    acme_api, globex_api = api_for(acme_plain), api_for(globex_plain)
    globex_run = globex_api.post_run(globex_pipeline.slug, {"input": TICKET}).json()
    assert acme_api.get(f"/api/v1/runs/{globex_run['id']}").status_code == 404
    assert acme_api.post_run(globex_pipeline.slug).status_code == 404
    assert acme_api.get("/api/v1/runs").json()["results"] == []
    assert acme_api.get("/api/v1/runs", {"pipeline": globex_pipeline.slug}).json()["results"] == []
    assert Run.objects.filter(pipeline=acme_pipeline).count() == 0


def test_a_workspace_token_reaches_its_workspace_only(api_for, make_token, superuser, acme_pipeline, globex_pipeline):
    _, plain = make_token(superuser, workspace=acme_pipeline.workspace)
    api = api_for(plain)
    assert api.post_run(acme_pipeline.slug).status_code == 201
    assert api.post_run(globex_pipeline.slug).status_code == 404


def test_the_token_holds_no_more_than_its_users_rights(api_for, make_token, auditor, author, acme_pipeline):
    _, author_plain = make_token(author, pipeline=acme_pipeline)
    run_id = api_for(author_plain).post_run(acme_pipeline.slug).json()["id"]
    _, auditor_plain = make_token(auditor, pipeline=acme_pipeline)
    auditor_api = api_for(auditor_plain)
    assert auditor_api.get(f"/api/v1/runs/{run_id}").status_code == 200  # auditors see runs
    refused = auditor_api.post_run(acme_pipeline.slug)  # but may not start one
    assert refused.status_code == 403 and "change right" in refused.json()["errors"][0]["reason"]


def test_a_token_whose_user_loses_the_right_reaches_nothing(api_for, make_token, author, acme_pipeline, superuser):
    from governance.services import permission_revoke

    _, plain = make_token(author, pipeline=acme_pipeline)
    with acting_as(superuser):
        for right in ("view_workspace", "change_config"):
            permission_revoke(actor=superuser, obj=acme_pipeline.workspace, permission=right, user=author)
    assert api_for(plain).post_run(acme_pipeline.slug).status_code == 404


def test_a_revoked_token_fails_at_once(api_for, make_token, author, acme_pipeline, superuser):
    token, plain = make_token(author, pipeline=acme_pipeline)
    api = api_for(plain)
    assert api.get("/api/v1/runs").status_code == 200
    token_revoke(token=token, actor=superuser)
    response = api.get("/api/v1/runs")
    assert response.status_code == 401
    assert response.json()["errors"][0]["reason"] == "The token is not valid or has been revoked."
    assert api.post_run(acme_pipeline.slug).status_code == 401
    assert not Run.objects.exists()
    assert AuditEvent.objects.filter(action="token.revoked", object_id=str(token.pk)).exists()


@pytest.mark.parametrize("header", [None, "Bearer keel_0000_nope", "Bearer", "Basic dXNlcjpwYXNz", "Bearer a b"])
def test_missing_or_bad_credentials_are_401_json(client, acme_pipeline, header):
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/v1/runs", headers=headers)
    assert response.status_code == 401 and response.json()["status"] == 401
    if header is None:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_last_used_is_recorded(api_for, make_token, author, acme_pipeline):
    token, plain = make_token(author, pipeline=acme_pipeline)
    assert token.last_used_at is None
    api_for(plain).get("/api/v1/runs")
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_token_create_prints_the_token_once(author, acme_pipeline):
    out, err = io.StringIO(), io.StringIO()
    call_command("token_create", "author", "--by", "author", "--pipeline", acme_pipeline.slug, stdout=out, stderr=err)
    plain = out.getvalue().strip()
    token = ServiceToken.objects.get()
    assert token.key_sha256 == hashlib.sha256(plain.encode()).hexdigest()
    assert token.pipeline == acme_pipeline and token.user == author and token.created_by == author
    assert plain not in err.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody", "--by", "author", "--workspace", "acme"], "No user named 'nobody'"),
        (["author", "--by", "nobody", "--workspace", "acme"], "--by: no user named 'nobody'"),
        (["author", "--by", "author", "--pipeline", "missing"], "No pipeline 'missing'"),
        (["outsider", "--by", "outsider", "--workspace", "acme"], "holds no right"),
        (["author", "--workspace", "acme"], "required: --by"),
    ],
)
def test_token_create_refuses_bad_arguments(author, outsider, acme_pipeline, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("token_create", *args, stdout=io.StringIO(), stderr=io.StringIO())
    assert not ServiceToken.objects.exists()


def test_a_lead_creates_a_token_in_the_admin_and_sees_it_once(client, lead, acme_pipeline, service_account):
    client.force_login(lead)
    response = client.post(
        "/admin/pipelines/servicetoken/add/", {"name": "crm", "user": service_account.pk, "pipeline": acme_pipeline.pk}
    )
    assert response.status_code == 200, response.content[:2000]
    token = ServiceToken.objects.get()
    plain = response.context["plain"]
    assert token.key_sha256 == hashlib.sha256(plain.encode()).hexdigest()
    page = client.get(f"/admin/pipelines/servicetoken/{token.pk}/change/").content.decode()
    assert token.prefix in page and plain not in page
    client.post("/admin/pipelines/servicetoken/", {"action": "revoke_tokens", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert token.is_revoked


def test_the_token_admin_is_governed(
    client, author, outsider, lead, acme_pipeline, globex_pipeline, make_token, superuser
):
    make_token(superuser, pipeline=globex_pipeline, name="globex crm")
    client.force_login(lead)
    assert "globex crm" not in client.get("/admin/pipelines/servicetoken/").content.decode()
    refused = client.post(
        "/admin/pipelines/servicetoken/add/", {"name": "x", "user": lead.pk, "pipeline": globex_pipeline.pk}
    )
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    client.force_login(outsider)
    assert client.get("/admin/pipelines/servicetoken/").status_code == 403
    assert ServiceToken.objects.count() == 1

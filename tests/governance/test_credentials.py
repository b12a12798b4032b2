"""Named credentials: what they may map to, who manages them, and reading a value."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from audit.models import AuditEvent
from governance.credential_sources import CredentialError
from governance.credentials import credential_save, credential_value
from governance.models import Credential
from governance.roles import GOVERNANCE_LEADS
from governance.services import role_grant
from tests import factories

KEEL_OWN = ["SECRET_KEY", "DATABASE_URL", "KEEL_CHECKPOINT_KEY", "KEEL_ANYTHING", "CELERY_BROKER_URL",
            "DJANGO_SETTINGS_MODULE", "EMAIL_HOST_PASSWORD", "AWS_SECRET_ACCESS_KEY", "ALLOWED_HOSTS",
            "DATABASE_POOL_MAX_SIZE", "PGPASSWORD", "REDIS_URL", "CSRF_TRUSTED_ORIGINS", "KEEL_METRICS_TOKEN",
            "OTEL_EXPORTER_OTLP_HEADERS", "PROMETHEUS_MULTIPROC_DIR"]  # fmt: skip


def _errors(credential: Credential) -> dict:
    with pytest.raises(ValidationError) as raised:
        credential.full_clean()
    return raised.value.message_dict


@pytest.mark.parametrize("name", KEEL_OWN)
def test_it_refuses_keels_own_settings_even_when_the_operator_allows_everything(settings, acme, name):
    settings.KEEL_CREDENTIAL_ENV_ALLOWLIST = ["*"]
    credential = Credential(workspace=acme, slug="k", name="k", env_name=name)
    assert "Keel's own configuration" in _errors(credential)["env_name"][0]


def test_it_refuses_a_variable_the_operator_has_not_allow_listed(settings, acme):
    settings.KEEL_CREDENTIAL_ENV_ALLOWLIST = ["OPENAI_API_KEY", "ACME_*"]
    assert "KEEL_CREDENTIAL_ENV_ALLOWLIST" in _errors(Credential(workspace=acme, slug="k", name="k",
                                                                  env_name="GLOBEX_KEY"))["env_name"][0]  # fmt: skip
    Credential(workspace=acme, slug="a", name="a", env_name="OPENAI_API_KEY").full_clean()
    Credential(workspace=acme, slug="b", name="b", env_name="ACME_WEBHOOK_SECRET").full_clean()


def test_it_refuses_a_value_instead_of_a_name(acme):
    errors = _errors(Credential(workspace=acme, slug="k", name="k", env_name="sk-live-0123456789"))
    assert "never the secret itself" in errors["env_name"][0]


def test_a_file_credential_needs_the_operators_directory_and_stays_inside_it(settings, acme, tmp_path):
    settings.KEEL_CREDENTIAL_FILE_DIR = None
    file_credential = Credential(workspace=acme, slug="f", name="f", source="file", file_name="openai")
    assert "KEEL_CREDENTIAL_FILE_DIR" in _errors(file_credential)["file_name"][0]
    settings.KEEL_CREDENTIAL_FILE_DIR = str(tmp_path / "secrets")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "openai").write_text("sk-from-a-file-0123\n")
    (tmp_path / "outside").write_text("not-for-workspaces-0123")
    (tmp_path / "secrets" / "escape").symlink_to(tmp_path / "outside")
    for name in ("../outside", "/etc/passwd", "sub/openai"):
        assert "no folders" in _errors(Credential(workspace=acme, slug="f", name="f", source="file",
                                                  file_name=name))["file_name"][0]  # fmt: skip
    Credential.objects.create(workspace=acme, slug="f", name="f", source="file", file_name="openai")
    Credential.objects.create(workspace=acme, slug="e", name="e", source="file", file_name="escape")
    assert credential_value(workspace_id=acme.pk, slug="f") == "sk-from-a-file-0123"
    with pytest.raises(CredentialError, match="not inside the credential directory"):
        credential_value(workspace_id=acme.pk, slug="e")


def test_a_stored_row_that_names_a_forbidden_variable_is_refused_when_read(acme, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "the-servers-own-secret-key")
    Credential.objects.create(workspace=acme, slug="sneaky", name="sneaky", env_name="SECRET_KEY")  # no clean()
    with pytest.raises(CredentialError, match="'sneaky': SECRET_KEY is part of Keel's own configuration"):
        credential_value(workspace_id=acme.pk, slug="sneaky")


def test_a_credential_is_read_only_in_its_own_workspace(acme, globex, monkeypatch):
    monkeypatch.setenv("TEST_GLOBEX_KEY", "globex-secret-0123")
    factories.CredentialFactory(workspace=globex, slug="provider", env_name="TEST_GLOBEX_KEY")
    assert credential_value(workspace_id=globex.pk, slug="provider") == "globex-secret-0123"
    with pytest.raises(CredentialError, match="no credential 'provider'"):
        credential_value(workspace_id=acme.pk, slug="provider")


def test_a_value_too_short_to_scrub_safely_is_refused(acme, monkeypatch):
    monkeypatch.setenv("TEST_SHORT", "abc")
    factories.CredentialFactory(workspace=acme, slug="short", env_name="TEST_SHORT")
    with pytest.raises(CredentialError, match="shorter than 8"):
        credential_value(workspace_id=acme.pk, slug="short")


def test_only_a_lead_of_the_workspace_or_a_superuser_manages_its_credentials(
    acme, globex, superuser, lead, author, auditor
):
    for actor in (author, auditor):
        with pytest.raises(PermissionDenied):
            credential_save(credential=Credential(workspace=acme, slug="k", name="k", env_name="TEST_K"), actor=actor)
    # A lead of acme is no lead of globex (the leads group is site-wide; leading is per workspace).
    with pytest.raises(PermissionDenied):
        credential_save(credential=Credential(workspace=globex, slug="k", name="k", env_name="TEST_K"), actor=lead)
    assert not Credential.objects.exists() and not AuditEvent.objects.filter(object_type="credential").exists()
    credential = credential_save(credential=Credential(workspace=acme, slug="k", name="k", env_name="TEST_K"),
                                 actor=lead)  # fmt: skip
    event = AuditEvent.objects.get(action="credential.created")
    assert (event.object_id, event.actor_id, event.workspace_id) == (str(credential.pk), lead.pk, acme.pk)
    moved = Credential.objects.get(pk=credential.pk)
    moved.workspace = globex
    with pytest.raises(PermissionDenied):
        credential_save(credential=moved, actor=lead)
    credential_save(credential=Credential(workspace=globex, slug="g", name="g", env_name="TEST_G"), actor=superuser)


def test_the_admin_lets_only_leads_manage_credentials_and_names_the_bad_field(client, acme, globex, lead, author):
    url = reverse("admin:governance_credential_add")
    client.force_login(author)
    assert client.get(url).status_code == 403
    theirs = factories.CredentialFactory(workspace=globex, slug="theirs")
    client.force_login(lead)
    assert client.get(reverse("admin:governance_credential_change", args=[theirs.pk])).status_code in (302, 403, 404)
    form = {"workspace": acme.pk, "name": "Key", "slug": "key", "source": "env", "env_name": "SECRET_KEY"}
    page = client.post(url, form)
    assert page.status_code == 200 and "part of Keel&#x27;s own configuration" in page.content.decode()
    assert not Credential.objects.filter(workspace=acme).exists()
    assert client.post(url, {**form, "env_name": "TEST_ACME_KEY"}).status_code == 302
    credential = Credential.objects.get(workspace=acme, slug="key")
    assert AuditEvent.objects.filter(action="credential.created", object_id=str(credential.pk)).exists()


def test_a_lead_of_another_workspace_only_cannot_add_credentials_here(client, acme, globex, superuser):
    other = factories.UserFactory(username="globex-lead")
    role_grant(actor=superuser, role=GOVERNANCE_LEADS, user=other, workspace=globex)
    client.force_login(other)
    url = reverse("admin:governance_credential_add")
    response = client.post(url, {"workspace": acme.pk, "name": "K", "slug": "k", "source": "env",
                                 "env_name": "TEST_K"})  # fmt: skip
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not Credential.objects.filter(workspace=acme).exists()

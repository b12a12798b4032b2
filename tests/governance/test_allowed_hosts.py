"""A workspace's allowed hosts: edited by its leads, validated, and on the record."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from audit.models import AuditEvent


def test_allowed_hosts_that_are_not_hosts_are_refused_naming_the_field(acme):
    acme.allowed_hosts = ["https://api.openai.com/v1"]
    with pytest.raises(ValidationError) as raised:
        acme.full_clean()
    assert "allowed_hosts" in raised.value.message_dict


def test_a_lead_edits_the_allowed_hosts_in_the_admin_and_the_change_is_audited(client, acme, lead, author):
    url = reverse("admin:governance_workspace_change", args=[acme.pk])
    form = {"name": acme.name, "slug": acme.slug, "owner": acme.owner_id, "description": "",
            "allowed_hosts": '["api.openai.com", "*.acme.test"]'}  # fmt: skip
    client.force_login(author)
    assert client.post(url, form).status_code == 403
    client.force_login(lead)
    assert client.post(url, form).status_code == 302
    acme.refresh_from_db()
    assert acme.allowed_hosts == ["api.openai.com", "*.acme.test"]
    event = AuditEvent.objects.filter(action="workspace.changed", object_id=str(acme.pk)).latest("seq")
    assert "allowed_hosts" in event.payload_data["changes"] and event.actor_id == lead.pk

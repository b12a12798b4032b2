"""The upgrade's migrations: tokens acting as another person are revoked on
the record, and every existing user's status is put on the chain."""

import importlib

from django.apps import apps

from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from pipelines.models import ServiceToken
from tests import factories

tokens_migration = importlib.import_module("pipelines.migrations.0016_run_requested_by")
accounts_migration = importlib.import_module("governance.migrations.0003_service_accounts")


def _legacy_token(user, created_by, pipeline, prefix: str) -> ServiceToken:
    # As the old code wrote them: straight rows, any user, any creator (or none).
    return ServiceToken.objects.create(
        name=f"legacy {prefix}", user=user, pipeline=pipeline, prefix=prefix, key_sha256=prefix * 8,
        created_by=created_by,
    )  # fmt: skip


def test_the_migration_revokes_tokens_acting_as_another_person_with_an_event(acme_config, lead, author, superuser):
    pipeline = acme_config["pipeline"]
    as_admin = _legacy_token(superuser, lead, pipeline, "aaaaaaaa")
    no_creator = _legacy_token(author, None, pipeline, "bbbbbbbb")
    own = _legacy_token(lead, lead, pipeline, "cccccccc")
    tokens_migration.revoke_tokens_acting_as_another(apps, None)
    for token in (as_admin, no_creator, own):
        token.refresh_from_db()
    assert as_admin.is_revoked and no_creator.is_revoked and not own.is_revoked
    events = AuditEvent.objects.filter(action="token.revoked").order_by("seq")
    assert [e.object_id for e in events] == [str(as_admin.pk), str(no_creator.pk)]
    assert all(
        e.actor_name == "system:migration" and "other than its creator" in e.payload_data["reason"] for e in events
    )
    assert events[0].payload_data["user"] == "root" and events[0].payload_data["created_by_id"] == lead.pk
    assert audit_chain_verify().ok


def test_the_migration_puts_every_existing_users_status_on_the_chain(db):
    factories.UserFactory(username="boss", is_superuser=True)
    accounts_migration.record_existing_users(apps, None)
    event = AuditEvent.objects.get(action="user.recorded", payload__contains='"boss"')
    assert event.payload_data["is_superuser"] is True and event.payload_data["is_active"] is True

"""Shared personas and fixtures.

Two workspaces: ``acme`` (where every persona holds its role) and ``globex``
(where nobody but the superuser holds anything). Personas: a governance lead,
a prompt engineer (the author), a reviewer, an auditor, an operator, and an
outsider who is staff with no role and no rights.
"""

import pytest

from audit.context import acting_as
from governance.roles import AUDITORS, GOVERNANCE_LEADS, OPERATORS, PROMPT_ENGINEERS, REVIEWERS, ROLES
from tests import factories
from tests.workers import empty_queue


@pytest.fixture(autouse=True, scope="session")
def _audit_guards_survive_flush():
    """After a transactional test Django empties every table: on SQLite with
    DELETE, which the append-only tables refuse, and on PostgreSQL with
    TRUNCATE, which their statement guards refuse. Wrap the flush SQL so that
    the guards are lifted for that statement and put straight back; nothing
    else in the suite may empty those tables."""
    from django.db import connection

    from audit.db import _SQLITE_INSTALL, _SQLITE_REMOVE, TABLE, immutable_statements, truncate_guard_statements
    from pipelines.db import IMMUTABLE_TABLES
    from reviews.db import TABLE as DECISIONS
    from reviews.db import statements as decision_guard

    append_only = (TABLE, *IMMUTABLE_TABLES, DECISIONS)
    if connection.vendor == "sqlite":
        guards = {TABLE: (list(_SQLITE_INSTALL), list(_SQLITE_REMOVE))}
        guards.update({table: immutable_statements("sqlite", table) for table in IMMUTABLE_TABLES})
        guards[DECISIONS] = decision_guard("sqlite")
    else:
        guards = {table: truncate_guard_statements(table) for table in append_only}
    DatabaseOperations = type(connection.ops)
    original = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, **kwargs):
        statements = original(self, style, tables, **kwargs)
        guarded = [guards[table] for table in tables if table in guards]
        removes = [s for _, remove in guarded for s in remove]
        installs = [s.strip() for install, _ in guarded for s in install]
        return [*removes, *statements, *installs]

    DatabaseOperations.sql_flush = sql_flush
    yield
    DatabaseOperations.sql_flush = original


@pytest.fixture(autouse=True, scope="session")
def _no_messages_from_earlier_sessions():
    """Each session makes its test database anew, so ids start again: a message
    an earlier session left on the broker would name this session's rows."""
    empty_queue()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Personas are created per test; the production hasher costs ~0.5 s each.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _operator_allows_loopback(settings):
    """As the demo does, the tests' operator lets workspaces reach 127.0.0.1
    (the test servers) and allow-lists TEST_* variables for credentials."""
    settings.KEEL_EGRESS_ALLOW_PRIVATE = ["127.0.0.1/32"]
    settings.KEEL_CREDENTIAL_ENV_ALLOWLIST = ["TEST_*"]


@pytest.fixture(autouse=True)
def _empty_cache():
    """Every test starts with an empty cache: rate-limit counters and cached
    queue counts are keyed by row ids, which a rolled-back test hands on."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def superuser(db):
    return factories.UserFactory(username="root", is_superuser=True)


@pytest.fixture
def acme(db, superuser):
    return factories.WorkspaceFactory(name="Acme", slug="acme", owner=superuser)


@pytest.fixture
def globex(db, superuser):
    return factories.WorkspaceFactory(name="Globex", slug="globex", owner=superuser)


def _persona(username: str, role: str | None, workspace, superuser, *, is_staff: bool = True):
    from governance.services import role_grant

    user = factories.UserFactory(username=username, is_staff=is_staff)
    if role is not None:
        with acting_as(superuser):
            role_grant(actor=superuser, role=role, user=user, workspace=workspace)
    return user


@pytest.fixture
def lead(acme, superuser):
    return _persona("lead", GOVERNANCE_LEADS, acme, superuser)


@pytest.fixture
def author(acme, superuser):
    return _persona("author", PROMPT_ENGINEERS, acme, superuser)


@pytest.fixture
def reviewer(acme, superuser):
    return _persona("reviewer", REVIEWERS, acme, superuser, is_staff=False)


@pytest.fixture
def auditor(acme, superuser):
    return _persona("auditor", AUDITORS, acme, superuser)


@pytest.fixture
def operator(acme, superuser):
    return _persona("operator", OPERATORS, acme, superuser)


@pytest.fixture
def outsider(db):
    return factories.UserFactory(username="outsider", is_staff=True)


@pytest.fixture
def personas(lead, author, reviewer, auditor, operator, outsider) -> dict:
    return {
        "lead": lead,
        "author": author,
        "reviewer": reviewer,
        "auditor": auditor,
        "operator": operator,
        "outsider": outsider,
    }


@pytest.fixture
def acme_config(acme, superuser):
    """A small working configuration in acme: policy, prompt, model, pipeline with steps."""
    with acting_as(superuser):
        policy = factories.ApprovalPolicyFactory(workspace=acme, name="Acme review")
        prompt = factories.PromptTemplateFactory(workspace=acme, slug="classify")
        model = factories.ModelConfigFactory(workspace=acme, slug="builtin")
        pipeline = factories.PipelineFactory(workspace=acme, slug="acme-triage", approval_policy=policy)
        factories.StepFactory(
            pipeline=pipeline, position=1, name="classify", kind="model", prompt=prompt, model_config=model
        )
        factories.StepFactory(pipeline=pipeline, position=2, name="gate", kind="gate")
    return {"policy": policy, "prompt": prompt, "model": model, "pipeline": pipeline}


@pytest.fixture
def globex_config(globex, superuser):
    with acting_as(superuser):
        policy = factories.ApprovalPolicyFactory(workspace=globex, name="Globex review")
        prompt = factories.PromptTemplateFactory(workspace=globex, slug="globex-classify")
        model = factories.ModelConfigFactory(workspace=globex, slug="globex-builtin")
        pipeline = factories.PipelineFactory(workspace=globex, slug="globex-triage", approval_policy=policy)
        factories.StepFactory(pipeline=pipeline, position=1, name="gate", kind="gate")
    return {"policy": policy, "prompt": prompt, "model": model, "pipeline": pipeline}


__all__ = ["ROLES"]

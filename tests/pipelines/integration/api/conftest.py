import json

import pytest
from django.test import Client

from audit.context import acting_as
from pipelines.integration.tokens import token_create
from pipelines.releases.cut import release_cut
from tests.releasing import release_to_production

TICKET = {"subject": "Where is my parcel?", "body": "The tracking has not moved since Monday."}


def deploy(pipeline, actor):
    with acting_as(actor):
        release = release_cut(pipeline=pipeline, actor=actor)
    release_to_production(release)
    return pipeline


@pytest.fixture
def acme_pipeline(acme_config, superuser):
    return deploy(acme_config["pipeline"], superuser)


@pytest.fixture
def globex_pipeline(globex_config, superuser):
    return deploy(globex_config["pipeline"], superuser)


@pytest.fixture
def make_token():
    """A token a person creates for themself (a person never creates one acting as another)."""

    def make(user, *, pipeline=None, workspace=None, name="billing system"):
        with acting_as(user):
            return token_create(user=user, name=name, pipeline=pipeline, workspace=workspace, actor=user)

    return make


class Api:
    """The test client with a bearer token and JSON bodies."""

    def __init__(self, token: str | None):
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def post_run(self, slug: str, body: dict | None = None, **kwargs):
        return self.client.post(
            f"/api/v1/pipelines/{slug}/runs", json.dumps(body if body is not None else {"input": TICKET}),
            content_type="application/json", headers=self.headers, **kwargs,
        )  # fmt: skip

    def get(self, path: str, params: dict | None = None):
        return self.client.get(path, params or {}, headers=self.headers)


@pytest.fixture
def api_for():
    return Api


@pytest.fixture
def service_account(acme, lead):
    """A service account of acme, created by its lead, holding the prompt engineer's role there."""
    from governance.accounts import service_account_create
    from governance.roles import PROMPT_ENGINEERS
    from governance.services import role_grant

    with acting_as(lead):
        account = service_account_create(workspace=acme, username="crm-bot", description="the CRM", actor=lead)
        role_grant(actor=lead, role=PROMPT_ENGINEERS, user=account.user, workspace=acme)
    return account.user

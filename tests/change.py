"""Putting a release through release control in tests that are about something
else (the engine, deliveries, replay): submitted, approved by a second person,
evaluated, then deployed — the same services production uses."""

from decimal import Decimal

from audit.context import acting_as
from governance.models import ChangePolicy
from pipelines.change import release_approve, release_submit
from pipelines.evaluation import release_evaluate
from pipelines.models import Deployment, Release
from pipelines.services import deployment_set
from tests import factories


def checker():
    """A second superuser: never the author or an editor of a test's configuration."""
    return factories.UserFactory(username="checker", is_superuser=True)


def release_approved(release: Release, *, approver=None) -> Release:
    """Submit, approve and evaluate ``release``. A pipeline without evaluation
    cases gets a workspace change policy that accepts an empty case set."""
    pipeline = release.pipeline
    approver = approver or checker()
    with acting_as(approver):
        if not pipeline.evaluation_cases.exists():
            ChangePolicy.objects.get_or_create(
                workspace=pipeline.workspace, pipeline=None, defaults={"min_pass_rate": Decimal("0")}
            )
        release_submit(release=release, actor=release.created_by or approver, notes="For the test.")
        release_approve(release=release, actor=approver)
        release_evaluate(release=release, actor=approver)
    return release


def release_to_production(release: Release, *, actor=None, approver=None) -> Deployment:
    release_approved(release, approver=approver)
    deployer = actor or approver or checker()
    with acting_as(deployer):
        return deployment_set(release=release, environment="production", actor=deployer)

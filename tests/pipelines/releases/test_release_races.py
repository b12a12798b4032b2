"""Two people at once: release control orders them on the pipeline row, so the
second sees what the first did and the pointer is never between two states."""

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from pipelines.models import Deployment
from pipelines.releases.approval import release_approve, release_retire, release_state, release_submit
from pipelines.releases.cut import release_cut
from pipelines.releases.deploy import deployment_set
from tests.releasing import classifier_pipeline, release_approved


def _together(*calls) -> list:
    """Run the calls in threads released at the same moment; returns each outcome."""
    barrier = threading.Barrier(len(calls))
    outcomes = [None] * len(calls)

    def worker(index, call):
        try:
            barrier.wait()
            outcomes[index] = call()
        except Exception as error:  # the outcome under test
            outcomes[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_two_people_deploying_the_same_release_at_once_deploy_it_once(acme, superuser, author, lead, operator):
    pipeline = classifier_pipeline(acme, actor=superuser)
    release = release_approved(release_cut(pipeline=pipeline, actor=author), approver=lead)
    outcomes = _together(
        lambda: deployment_set(release=release, environment="production", actor=operator),
        lambda: deployment_set(release=release, environment="production", actor=lead),
    )
    refused = [o for o in outcomes if isinstance(o, ValidationError)]
    assert len(refused) == 1 and "already live" in refused[0].messages[0], outcomes
    assert Deployment.objects.get(pipeline=pipeline, environment="production").release == release
    assert AuditEvent.objects.filter(action="deployment.set").count() == 1
    assert audit_chain_verify().ok


@pytest.mark.django_db(transaction=True)
def test_approving_while_someone_retires_the_release_leaves_one_consistent_outcome(
    acme, superuser, author, lead, operator
):
    pipeline = classifier_pipeline(acme, actor=superuser)
    release = release_cut(pipeline=pipeline, actor=author)
    release_submit(release=release, actor=author, notes="x")
    outcomes = _together(
        lambda: release_approve(release=release, actor=lead),
        lambda: release_retire(release=release, actor=operator, reason="superseded"),
    )
    state = release_state(release)
    assert state == "retired"  # retiring succeeds either way; approving a retired release does not
    approved = [o for o in outcomes if not isinstance(o, Exception) and o.state == "approved"]
    if approved:  # the approval came first: it stands in the record before the retirement
        assert list(release.transitions.values_list("state", flat=True).order_by("pk"))[-1] == "retired"
    else:
        assert any(isinstance(o, ValidationError) and "retired" in o.messages[0] for o in outcomes), outcomes
    assert audit_chain_verify().ok

"""Canaries: the bucket rule, routing in run_start, the allow-list, and the
automatic rollback judged on a clock the test sets."""

import math
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from audit.context import acting_as
from audit.models import AuditEvent
from governance.models import ChangePolicy
from pipelines.models import Deployment, Run
from pipelines.releases.canary import (
    BUCKETS,
    canaries_watch,
    canary_bucket,
    canary_promote,
    canary_rollback,
    canary_set,
)
from pipelines.releases.cut import release_cut
from pipelines.runs.engine import run_start
from tests.releasing import classifier_pipeline, prompt_edit, release_approved, release_to_production

KEYS = [f"request-{n}" for n in range(10_000)]


@pytest.mark.parametrize("share", [1, 5, 10, 25, 50, 90])
def test_the_canary_takes_its_share_of_10000_keys_within_the_binomial_99_percent_band(share):
    inside = sum(canary_bucket("acme-classify", key) < share * 100 for key in KEYS)
    p, n = share / 100, len(KEYS)
    band = 2.576 * math.sqrt(n * p * (1 - p))  # two-sided 99%
    assert abs(inside - n * p) <= band, (inside, n * p, band)


def test_raising_the_share_keeps_every_earlier_key_in_the_canary():
    buckets = {key: canary_bucket("acme-classify", key) for key in KEYS[:2000]}
    at_10 = {k for k, b in buckets.items() if b < 10 * 100}
    at_30 = {k for k, b in buckets.items() if b < 30 * 100}
    assert at_10 and at_10 < at_30
    assert all(0 <= b < BUCKETS for b in buckets.values())
    # The slug is part of the key: another pipeline splits its traffic differently.
    assert [canary_bucket("other", k) for k in KEYS[:50]] != [buckets[k] for k in KEYS[:50]]


@pytest.fixture
def canary(acme, superuser, author):
    """acme-classify with #1 live in production and #2 approved, evaluated, not yet live."""
    pipeline = classifier_pipeline(acme, actor=superuser)
    stable = release_cut(pipeline=pipeline, actor=author)
    release_to_production(stable)
    prompt_edit(pipeline, actor=author, body="Canary: {{ subject }}")
    candidate = release_approved(release_cut(pipeline=pipeline, actor=author))
    return pipeline, stable, candidate


def _start(pipeline, capture, **kwargs) -> Run:
    with capture(execute=False):
        run, _ = run_start(pipeline=pipeline, actor=None, trigger="api", **kwargs)
    return run


def test_run_start_sends_a_key_to_the_same_release_every_time(canary, operator, django_capture_on_commit_callbacks):
    pipeline, stable, candidate = canary
    canary_set(release=candidate, share=30, actor=operator)
    chosen = {}
    for n in range(60):
        key = f"ticket-{n}"
        run = _start(pipeline, django_capture_on_commit_callbacks, input={"subject": f"Ticket {n}"},
                     idempotency_key=key)  # fmt: skip
        expected = candidate if canary_bucket(pipeline.slug, key) < 3000 else stable
        assert run.release == expected
        chosen[key] = run.release
    assert {stable, candidate} == set(chosen.values())
    # Without a key, the input hash decides: the same input, the same release.
    first = _start(pipeline, django_capture_on_commit_callbacks, input={"subject": "Same"})
    again = _start(pipeline, django_capture_on_commit_callbacks, input={"subject": "Same"})
    assert first.release == again.release


def test_an_allow_listed_source_always_gets_the_canary(canary, operator, django_capture_on_commit_callbacks):
    pipeline, stable, candidate = canary
    canary_set(release=candidate, share=0, sources=["beta-desk"], actor=operator)
    for n in range(20):
        run = _start(pipeline, django_capture_on_commit_callbacks, input={"subject": f"T{n}"}, source="beta-desk")
        assert run.release == candidate
        other = _start(pipeline, django_capture_on_commit_callbacks, input={"subject": f"T{n}"}, source="web")
        assert other.release == stable


@pytest.mark.parametrize("share", ["-1", "100.01", "150", "abc", "NaN"])
def test_a_share_outside_0_to_100_is_refused_and_nothing_changes(canary, operator, share):
    pipeline, stable, candidate = canary
    with pytest.raises(ValidationError, match="share"):
        canary_set(release=candidate, share=share, actor=operator)
    deployment = Deployment.objects.get(pipeline=pipeline, environment="production")
    assert (deployment.release, deployment.canary_release, deployment.canary_share) == (stable, None, 0)


def test_an_unapproved_release_cannot_be_a_canary(canary, author, operator, auditor):
    pipeline, _, _ = canary
    prompt_edit(pipeline, actor=author, body="Third: {{ subject }}")
    third = release_cut(pipeline=pipeline, actor=author)
    with pytest.raises(ValidationError, match="not approved"):
        canary_set(release=third, share=10, actor=operator)
    with pytest.raises(PermissionDenied):
        canary_set(release=third, share=10, actor=auditor)


def test_promoting_makes_the_canary_the_release_for_all_traffic(canary, operator):
    pipeline, stable, candidate = canary
    canary_set(release=candidate, share=10, actor=operator)
    deployment = canary_promote(pipeline=pipeline, actor=operator)
    assert (deployment.release, deployment.canary_release, deployment.canary_share) == (candidate, None, 0)
    with pytest.raises(ValidationError, match="no running canary"):
        canary_promote(pipeline=pipeline, actor=operator)


def _runs(pipeline, release, statuses: list[str], at) -> None:
    for status in statuses:
        run = Run.objects.create(pipeline=pipeline, release=release, environment="production", input={},
                                 input_sha256="0" * 64, trigger="api", seed=1, status=status)  # fmt: skip
        Run.objects.filter(pk=run.pk).update(created_at=at)


def test_a_canary_failing_too_often_rolls_itself_back_on_the_watchs_clock(
    canary, operator, superuser, django_capture_on_commit_callbacks
):
    pipeline, stable, candidate = canary
    with acting_as(superuser):
        ChangePolicy.objects.create(
            workspace=pipeline.workspace, pipeline=pipeline, canary_min_runs=10, min_pass_rate=0,
            canary_max_failure_rate=Decimal("0.2"), notify=["oncall@acme.test"],
        )  # fmt: skip
        pipeline.escalation_contact = "escalation@acme.test"
        pipeline.save()
    deployment = canary_set(release=candidate, share=20, actor=operator)
    start = deployment.canary_started_at
    # Frozen clock: the watch is told the time; nothing here reads the wall clock's value.
    t1, t2 = start + timedelta(minutes=5), start + timedelta(minutes=10)
    _runs(pipeline, candidate, ["completed"] * 6 + ["failed"] * 3, at=t1)  # 9 runs: below the minimum
    _runs(pipeline, stable, ["completed"] * 20, at=t1)
    _runs(pipeline, candidate, ["failed"] * 5, at=t2 + timedelta(minutes=1))  # after the watch's "now"
    assert canaries_watch(now=t2) == []
    assert Deployment.objects.get(pk=deployment.pk).canary_share == 20
    _runs(pipeline, candidate, ["failed"], at=t2)  # the tenth: 4 of 10 failed, over 0.2
    with django_capture_on_commit_callbacks(execute=True):
        assert canaries_watch(now=t2) == [pipeline.pk]
    after = Deployment.objects.get(pk=deployment.pk)
    assert (after.release, after.canary_release, after.canary_share) == (stable, candidate, 0)
    event = AuditEvent.objects.get(action="deployment.canary_rolled_back")
    payload = event.payload_data
    assert "failure rate 0.400 over 10 runs exceeds the limit 0.200" in payload["reason"]
    assert payload["figures"]["canary"]["runs"] == 10 and payload["figures"]["stable"]["failure_rate"] == 0
    assert event.actor_name == "system:canary-watch"
    [message] = mail.outbox
    assert set(message.to) == {"oncall@acme.test", "escalation@acme.test", pipeline.owner.email}
    assert canaries_watch(now=t2 + timedelta(minutes=1)) == []  # nothing left to judge


def test_a_canary_rejected_by_reviewers_more_than_the_stable_release_rolls_back(canary, operator):
    pipeline, stable, candidate = canary
    deployment = canary_set(release=candidate, share=50, actor=operator)
    at = deployment.canary_started_at + timedelta(seconds=30)
    _runs(pipeline, candidate, ["completed"] * 15 + ["rejected"] * 5, at=at)  # 0.25 > the default 0.2
    _runs(pipeline, stable, ["completed"] * 20, at=at)
    assert canaries_watch(now=at) == [pipeline.pk]
    reason = AuditEvent.objects.get(action="deployment.canary_rolled_back").payload_data["reason"]
    assert reason.startswith("rejection rate 0.250")


def test_runs_from_before_the_canary_began_do_not_count(canary, operator):
    pipeline, stable, candidate = canary
    deployment = canary_set(release=candidate, share=50, actor=operator)
    _runs(pipeline, candidate, ["failed"] * 30, at=deployment.canary_started_at - timedelta(hours=1))
    assert canaries_watch(now=timezone.now() + timedelta(hours=1)) == []


def test_stopping_a_canary_by_hand_needs_a_reason(canary, operator):
    pipeline, _, candidate = canary
    canary_set(release=candidate, share=5, actor=operator)
    with pytest.raises(ValidationError, match="Say why"):
        canary_rollback(pipeline=pipeline, actor=operator, reason="")
    canary_rollback(pipeline=pipeline, actor=operator, reason="Looks off")
    assert Deployment.objects.get(pipeline=pipeline, environment="production").canary_share == 0


def test_a_canary_started_again_after_a_rollback_is_judged_on_a_new_window(canary, operator):
    pipeline, stable, candidate = canary
    first = canary_set(release=candidate, share=50, actor=operator)
    began = timezone.now() - timedelta(hours=1)  # the first window began an hour ago
    Deployment.objects.filter(pk=first.pk).update(canary_started_at=began)
    _runs(pipeline, candidate, ["failed"] * 20, at=began + timedelta(minutes=10))
    _runs(pipeline, stable, ["completed"] * 20, at=began + timedelta(minutes=10))
    assert canaries_watch(now=began + timedelta(minutes=20)) == [pipeline.pk]  # rolled back to 0%
    # The operator fixes what failed and starts the same release again.
    again = canary_set(release=candidate, share=50, actor=operator)
    assert again.canary_started_at > began + timedelta(minutes=20)
    assert Deployment.objects.get(pk=again.pk).canary_started_at == again.canary_started_at
    # The failures that stopped it are before its new window: the watch lets it run.
    assert canaries_watch(now=again.canary_started_at + timedelta(seconds=30)) == []
    assert Deployment.objects.get(pk=again.pk).canary_share == 50
    event = AuditEvent.objects.filter(action="deployment.canary_set").latest("pk")
    assert event.payload_data["window_started_at"] == again.canary_started_at.isoformat()


def test_raising_a_running_canary_s_share_keeps_its_window(canary, operator):
    pipeline, stable, candidate = canary
    first = canary_set(release=candidate, share=10, actor=operator)
    raised = canary_set(release=candidate, share=30, actor=operator)
    assert raised.canary_started_at == first.canary_started_at

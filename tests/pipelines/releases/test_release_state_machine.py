"""A state machine over cut / submit / approve / reject / evaluate / deploy /
canary / promote / rollback / pause, checking after every step: exactly one
live production release, release numbers never reused, a live release always
approved by someone other than its author, every transition with its audit
event, and a refused step changing nothing."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from audit.context import acting_as
from audit.models import AuditEvent
from governance.roles import GOVERNANCE_LEADS
from governance.services import role_grant
from pipelines.models import Deployment, EvaluationCase, Release, ReleaseTransition
from pipelines.releases.approval import release_approve, release_reject, release_submit
from pipelines.releases.canary import canary_promote, canary_set
from pipelines.releases.cut import release_cut
from pipelines.releases.deploy import deployment_rollback, deployment_set
from pipelines.releases.pause import pipeline_pause, pipeline_unpause
from tests import factories
from tests.releasing import classifier_pipeline, evaluate_now, prompt_edit

REFUSED = (ValidationError, PermissionDenied)
# Prompts that keep the case passing, and one that breaks it (the classifier sees no words).
BODIES = ["{{ subject }}", "Ticket: {{ subject }}", "Subject line: {{ subject }}", "Length {{ subject | length }}"]


@pytest.mark.django_db
def test_release_control_keeps_its_invariants_whatever_the_order(acme, superuser, author, lead, operator):
    lead2 = factories.UserFactory(username="lead2")
    with acting_as(superuser):
        role_grant(actor=superuser, role=GOVERNANCE_LEADS, user=lead2, workspace=acme)
    people = {"author": author, "lead": lead, "lead2": lead2, "operator": operator}

    class ReleaseControl(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            # Each example runs in a savepoint rolled back at its end.
            self.atomic = transaction.atomic()
            self.atomic.__enter__()
            self.pipeline = classifier_pipeline(acme, actor=superuser)
            EvaluationCase.objects.create(pipeline=self.pipeline, name="parcel",
                                          input={"subject": "Where is my parcel? Tracking is stuck"},
                                          expected_label="shipping")  # fmt: skip
            self.edits = 0
            first = self._cut()
            release_submit(release=first, actor=author, notes="first")
            release_approve(release=first, actor=lead)
            evaluate_now(release=first, actor=author)
            deployment_set(release=first, environment="production", actor=operator)

        def teardown(self):
            transaction.set_rollback(True)
            self.atomic.__exit__(None, None, None)

        # helpers

        def _cut(self, maker=author):
            self.edits += 1
            prompt_edit(self.pipeline, actor=maker, body=f"{BODIES[self.edits % len(BODIES)]} #{self.edits}")
            return release_cut(pipeline=self.pipeline, actor=maker, notes="cut")

        def _release(self, index: int) -> Release:
            # Counted from the newest, where most of the action is.
            releases = list(self.pipeline.releases.order_by("-number"))
            return releases[index % len(releases)]

        def _state(self) -> tuple:
            deployment = Deployment.objects.get(pipeline=self.pipeline, environment="production")
            return (deployment.release_id, deployment.canary_release_id, deployment.canary_share, deployment.paused,
                    ReleaseTransition.objects.count(), AuditEvent.objects.count(), Release.objects.count())  # fmt: skip

        def _attempt(self, call) -> None:
            before = self._state()
            try:
                call()
            except REFUSED:
                assert self._state() == before, "a refused step changed something"

        # rules

        @rule(who=st.sampled_from(["author", "lead"]))
        def cut_and_submit(self, who):
            # A lead may make a release too; then only the other lead may approve it.
            release = self._cut(people[who])
            release_submit(release=release, actor=people[who], notes="next")

        @rule(maker=st.sampled_from(["author", "lead"]), checker=st.sampled_from(["lead", "lead2"]))
        def change_end_to_end(self, maker, checker):
            """Cut, submit, approve, evaluate and deploy in one go, by chosen people."""
            release = self._cut(people[maker])
            release_submit(release=release, actor=people[maker], notes="end to end")
            self._attempt(lambda: release_approve(release=release, actor=people[checker]))
            evaluate_now(release=release, actor=author)
            self._attempt(lambda: deployment_set(release=release, environment="production", actor=operator))

        @rule(index=st.integers(0, 3), who=st.sampled_from(sorted(people)))
        def approve(self, index, who):
            self._attempt(lambda: release_approve(release=self._release(index), actor=people[who]))

        @rule(index=st.integers(0, 3), who=st.sampled_from(sorted(people)))
        def reject(self, index, who):
            self._attempt(lambda: release_reject(release=self._release(index), actor=people[who], reason="no"))

        @rule(index=st.integers(0, 3))
        def evaluate(self, index):
            evaluate_now(release=self._release(index), actor=author)

        @rule(index=st.integers(0, 3))
        def deploy(self, index):
            self._attempt(lambda: deployment_set(release=self._release(index), environment="production",
                                                 actor=operator))  # fmt: skip

        @rule(index=st.integers(0, 3), share=st.sampled_from(["0", "5", "50", "100", "-3", "100.5"]))
        def canary(self, index, share):
            self._attempt(lambda: canary_set(release=self._release(index), share=share, actor=operator))

        @rule()
        def promote(self):
            self._attempt(lambda: canary_promote(pipeline=self.pipeline, actor=operator))

        @rule(number=st.integers(0, 12))
        def rollback(self, number):
            self._attempt(lambda: deployment_rollback(pipeline=self.pipeline, to_number=number, actor=operator))

        @rule()
        def pause_or_resume(self):
            paused = Deployment.objects.get(pipeline=self.pipeline, environment="production").paused
            if paused:
                pipeline_unpause(pipeline=self.pipeline, actor=operator)
            else:
                pipeline_pause(pipeline=self.pipeline, actor=operator, reason="drill")

        # invariants

        @invariant()
        def exactly_one_live_production_release(self):
            live = Deployment.objects.filter(pipeline=self.pipeline, environment="production")
            assert live.count() == 1 and live.get().release_id is not None

        @invariant()
        def release_numbers_are_never_reused(self):
            numbers = list(self.pipeline.releases.order_by("number").values_list("number", flat=True))
            assert numbers == list(range(1, len(numbers) + 1))

        @invariant()
        def what_is_live_was_approved_by_someone_other_than_its_author(self):
            deployment = Deployment.objects.get(pipeline=self.pipeline, environment="production")
            live = [deployment.release]
            if deployment.canary_release_id and deployment.canary_share > 0:
                live.append(deployment.canary_release)
            for release in live:
                approved = release.transitions.filter(state=ReleaseTransition.State.APPROVED)
                assert approved.exists(), f"#{release.number} is live without approval"
                voters = set(release.transitions.filter(state="approval").values_list("actor_id", flat=True))
                assert voters and release.created_by_id not in voters

        @invariant()
        def every_transition_has_its_audit_event(self):
            events = AuditEvent.objects.filter(action__startswith="release.", object_type="release")
            recorded = {(e.action, e.payload_data.get("transition")) for e in events}
            for transition in ReleaseTransition.objects.filter(release__pipeline=self.pipeline):
                assert (f"release.{transition.state}", transition.pk) in recorded

    run_state_machine_as_test(
        ReleaseControl,
        settings=settings(max_examples=25, stateful_step_count=15, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]),
    )  # fmt: skip

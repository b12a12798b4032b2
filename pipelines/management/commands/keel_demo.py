"""Demo data: role groups, a demo workspace with a support-triage pipeline, a
second client workspace, and one demo user per role. Idempotent: a second run
changes nothing but a demo user's password that differs from the documented one
(reset to it)."""

import json
import time
from collections import Counter
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from audit.context import acting_as
from governance.models import ApprovalPolicy, Workspace
from governance.roles import AUDITORS, GOVERNANCE_LEADS, OPERATORS, PROMPT_ENGINEERS, REVIEWERS, role_groups_ensure
from governance.services import role_grant
from pipelines.evaluation.services import evaluation_execute, release_evaluate
from pipelines.models import EvaluationCase, ModelConfig, Pipeline, PromptTemplate, Run, Step, StepRun
from pipelines.releases.approval import release_approve, release_submit
from pipelines.releases.cut import release_cut
from pipelines.releases.deploy import deployment_set
from pipelines.runs.engine import run_execute, run_start

TICKETS = Path(__file__).resolve().parents[2] / "fixtures" / "demo_tickets.json"

DEMO_PASSWORD = "keel-demo"
# username -> (role, staff)
DEMO_USERS = {
    "lead": (GOVERNANCE_LEADS, True),
    "engineer": (PROMPT_ENGINEERS, True),
    "reviewer": (REVIEWERS, False),
    "auditor": (AUDITORS, True),
    "operator": (OPERATORS, True),
}

TICKET_SCHEMA = {
    "type": "object",
    "properties": {
        "subject": {"type": "string", "minLength": 1, "maxLength": 200},
        "body": {"type": "string", "minLength": 1, "maxLength": 10000},
        "customer_email": {"type": "string", "format": "email"},
        "order_id": {"type": "string"},
        "channel": {"enum": ["email", "chat", "web", "phone"]},
    },
    "required": ["subject", "body", "customer_email"],
    "additionalProperties": False,
}

CLASSIFY_PROMPT = """Classify this support ticket as one of: {{ labels | join(", ") }}.
Answer with the label and a confidence between 0 and 1.

Subject: {{ subject }}
Message:
{{ body }}
"""

DRAFT_PROMPT = """Write a short, polite reply to a customer whose ticket was classified as {{ label }}.
Do not promise refunds or delivery dates; a person checks refunds and complaints.

Subject: {{ subject }}
Message:
{{ body }}
"""

LABELS = ["billing", "refund", "shipping", "technical", "account", "complaint", "other"]


class Command(BaseCommand):
    help = "Create (or refresh) the demo workspace, pipeline and one user per role."

    def add_arguments(self, parser):
        parser.add_argument("--runs", type=int, default=0, help="Submit this many sample tickets and wait for them.")
        parser.add_argument(
            "--inline", action="store_true", help="Execute the runs in this process instead of on a Celery worker."
        )
        parser.add_argument("--timeout", type=float, default=180.0, help="Seconds to wait for the runs to settle.")

    def handle(self, *args, **options):
        if options["runs"] < 0:
            raise CommandError("--runs must be zero or more.")
        self._setup()
        self._print_credentials()
        if options["runs"]:
            self._submit(options["runs"], inline=options["inline"], timeout=options["timeout"])

    @transaction.atomic
    def _setup(self) -> None:
        with acting_as("keel_demo"):
            role_groups_ensure()
            admin = self._user("admin", staff=True, superuser=True)
            users = {name: self._user(name, staff=staff) for name, (_, staff) in DEMO_USERS.items()}
        with acting_as(admin):
            northwind = self._workspace("northwind", "Northwind Traders (support)", admin)
            self._workspace("contoso", "Contoso Ltd", admin)
            for name, (role, _) in DEMO_USERS.items():
                if not users[name].groups.filter(name=role).exists():
                    role_grant(actor=admin, role=role, user=users[name], workspace=northwind)
            pipeline = self._triage_pipeline(northwind, owner=users["lead"])
            self._evaluation_cases(pipeline)
            if not pipeline.deployments.filter(environment="production", release__isnull=False).exists():
                # Through release control like any change: cut and submitted by the
                # admin, approved by the lead (a second person), evaluated, deployed.
                release = release_cut(pipeline=pipeline, actor=admin, notes="The demo's first release.")
                release_submit(release=release, actor=admin, notes="The demo's first release.")
        if not pipeline.deployments.filter(environment="production", release__isnull=False).exists():
            with acting_as(users["lead"]):
                release_approve(release=release, actor=users["lead"], note="Demo set-up")
                # The demo's models are built in (no network): its set-up runs the
                # evaluation here rather than waiting for the worker it starts later.
                evaluation_execute(release_evaluate(release=release, actor=users["lead"]).pk)
            with acting_as(admin):
                deployment_set(release=release, environment="production", actor=admin, reason="Demo set-up")

    def _evaluation_cases(self, pipeline: Pipeline) -> None:
        """The first sample tickets as evaluation cases: every reply has a
        known label and a draft, and never promises a guarantee."""
        if pipeline.evaluation_cases.exists():
            return
        schema = {"type": "object", "required": ["label", "draft"],
                  "properties": {"label": {"enum": LABELS}, "draft": {"type": "string"}}}  # fmt: skip
        tickets = json.loads(TICKETS.read_text())[:8]
        cases = [
            EvaluationCase(
                pipeline=pipeline,
                name=f"sample ticket {n}",
                input=ticket,
                output_schema=schema,
                forbidden_phrases=["guarantee"],
            )
            for n, ticket in enumerate(tickets, start=1)
        ]
        EvaluationCase.objects.bulk_create(cases)

    def _submit(self, count: int, *, inline: bool, timeout: float) -> None:
        """Start ``count`` runs from the sample tickets and wait until none is
        queued or running (on a worker, or here with --inline)."""
        tickets = json.loads(TICKETS.read_text())
        pipeline = Pipeline.objects.get(slug="support-triage")
        ids = []
        for index in range(count):
            ticket = tickets[index % len(tickets)]
            with acting_as("keel_demo"):
                run, _ = run_start(
                    pipeline=pipeline, input=ticket, actor=None, trigger="cli", source="keel_demo", enqueue=not inline
                )
                if inline:
                    run_execute(run.pk)
            ids.append(run.pk)
        self.stdout.write(f"Submitted {count} sample tickets to support-triage; waiting for them to settle...")
        deadline = time.monotonic() + timeout
        runs = Run.objects.filter(pk__in=ids)
        while runs.filter(status__in=["queued", "running"]).exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        by_status = Counter(runs.values_list("status", flat=True))
        labels = Counter(
            step.output.get("label") for step in StepRun.objects.filter(run__in=ids, kind="parse") if step.output
        )
        self.stdout.write("Runs: " + ", ".join(f"{n} {status}" for status, n in sorted(by_status.items())))
        self.stdout.write("Labels: " + ", ".join(f"{n} {label}" for label, n in labels.most_common()))
        unsettled = by_status.get("queued", 0) + by_status.get("running", 0)
        if unsettled:
            raise CommandError(f"{unsettled} runs did not settle within {timeout:.0f} s: is a Celery worker running?")

    def _user(self, username: str, *, staff: bool, superuser: bool = False):
        user, _ = get_user_model().objects.get_or_create(
            username=username,
            defaults={"email": f"{username}@demo.keel.local", "is_staff": staff, "is_superuser": superuser},
        )
        # Reset only a password that differs: each change is a user.password_changed event.
        if not user.check_password(DEMO_PASSWORD):
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        return user

    def _workspace(self, slug: str, name: str, owner) -> Workspace:
        # The demo's model and webhook servers run on this machine: its workspaces reach
        # 127.0.0.1 (with the operator's KEEL_EGRESS_ALLOW_PRIVATE=127.0.0.1/32, as `make demo` sets).
        workspace, _ = Workspace.objects.get_or_create(
            slug=slug, defaults={"name": name, "owner": owner, "allowed_hosts": ["127.0.0.1", "localhost"]}
        )
        return workspace

    def _triage_pipeline(self, workspace: Workspace, *, owner) -> Pipeline:
        if Pipeline.objects.filter(slug="support-triage").exists():
            return Pipeline.objects.get(slug="support-triage")
        policy = ApprovalPolicy.objects.create(
            workspace=workspace,
            name="Customer replies",
            review_mode=ApprovalPolicy.ReviewMode.EXCEPTIONS,
            confidence_threshold="0.750",
            rules=[
                {"field": "label", "operator": "in", "value": ["refund", "complaint"]},
                {"field": "draft", "operator": "contains", "value": "guarantee"},
                # Legal threats always reach a person, whatever the classifier made of them.
                {"field": "body", "operator": "contains", "value": "legal action"},
            ],
            sample_rate="0.100",
            required_approvals=1,
            review_deadline_hours=4,
        )
        classify = PromptTemplate.objects.create(
            workspace=workspace,
            slug="ticket-classify",
            name="Classify a ticket",
            body=CLASSIFY_PROMPT,
            variables=["labels", "subject", "body"],
            owner=owner,
        )
        draft = PromptTemplate.objects.create(
            workspace=workspace,
            slug="reply-draft",
            name="Draft a reply",
            body=DRAFT_PROMPT,
            variables=["label", "subject", "body"],
            owner=owner,
        )
        classifier = ModelConfig.objects.create(
            workspace=workspace,
            slug="keyword-classifier",
            name="Built-in keyword classifier",
            provider=ModelConfig.Provider.BUILTIN,
            model_name="keyword-classifier",
            model_version="1",
            max_tokens=64,
        )
        drafter = ModelConfig.objects.create(
            workspace=workspace,
            slug="template-drafter",
            name="Built-in template drafter",
            provider=ModelConfig.Provider.BUILTIN,
            model_name="template-drafter",
            model_version="1",
            max_tokens=400,
        )
        pipeline = Pipeline.objects.create(
            workspace=workspace,
            slug="support-triage",
            name="Support ticket triage",
            description="Classifies incoming support tickets and drafts a reply for a person to check.",
            owner=owner,
            escalation_contact="support-leads@demo.keel.local",
            runbook=(
                "## Responsibilities\n- Owner: the support lead.\n- Reviewers: the support team.\n\n"
                "## Escalation\n1. A review past its deadline goes to support-leads@.\n"
                "2. Still open after a second deadline: the pipeline owner.\n"
            ),
            approval_policy=policy,
            input_schema=TICKET_SCHEMA,
        )
        steps = [
            ("validate ticket", "validate", {}, None, None),
            ("redact PII", "redact", {"fields": ["body"], "builtin": ["email", "phone", "card"]}, None, None),
            (
                "classify",
                "model",
                {"output_field": "classification", "variables": {"labels": LABELS}},
                classify,
                classifier,
            ),
            (
                "parse label",
                "parse",
                {"format": "label_confidence", "input_field": "classification", "labels": LABELS},
                None,
                None,
            ),
            ("draft reply", "model", {"output_field": "draft"}, draft, drafter),
            ("human gate", "gate", {}, None, None),
            # A stored JSON result. {"format": "pdf"} would also make a PDF report of it, at
            # about 20 ms of CPU a run: more than the rest of a demo run's steps together,
            # and the engine's benchmark measures the engine on this pipeline.
            ("store result", "deliver", {"channel": "stored"}, None, None),
        ]
        for position, (name, kind, config, prompt, model) in enumerate(steps, start=1):
            step = Step(
                pipeline=pipeline,
                position=position,
                name=name,
                kind=kind,
                config=config,
                prompt=prompt,
                model_config=model,
            )
            step.full_clean()
            step.save()
        return pipeline

    def _print_credentials(self) -> None:
        self.stdout.write(self.style.SUCCESS("Keel demo ready."))
        self.stdout.write(f"Sign in to the admin (/admin/) with any of these (password: {DEMO_PASSWORD}):")
        self.stdout.write("  admin     superuser")
        for name, (role, staff) in DEMO_USERS.items():
            note = "" if staff else "  (not staff: works the review queue at /review/)"
            self.stdout.write(f"  {name:<9} {role} of Northwind Traders{note}")

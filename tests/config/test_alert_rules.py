"""The example alert rules (deploy/prometheus/alerts.yml) parse, and every series
their expressions name is one that /metrics exposes; the gauges they watch
read the stored state they describe."""

import io
import re
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.utils import timezone

from audit.checkpoints import audit_checkpoint_write
from audit.services import audit_chain_check
from governance.models import ChangePolicy
from pipelines.models import Budget, DeadLetter, Delivery, Deployment, Pipeline, Run
from pipelines.releases.canary import canaries_watch
from pipelines.runs.budgets import budget_spend
from tests.config.scrape import TOKEN, names, scrape, value

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"

# PromQL's own words: aggregations, functions, operators and modifiers.
_PROMQL_WORDS = {"sum", "min", "max", "avg", "count", "by", "without", "on", "ignoring", "group_left", "group_right",
                 "and", "or", "unless", "bool", "offset", "rate", "irate", "increase", "delta", "absent",
                 "max_over_time", "min_over_time", "avg_over_time", "histogram_quantile", "time", "vector"}  # fmt: skip


def series_named(expr: str) -> set[str]:
    """The metric names in a PromQL expression: identifiers that are neither
    PromQL's own words nor label names (inside braces or after by/without)."""
    text = re.sub(r'"[^"]*"', "", expr)  # label values
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    return {word for word in re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", text) if word not in _PROMQL_WORDS}


def test_the_rules_file_is_prometheus_rule_groups():
    document = yaml.safe_load(RULES.read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    assert {"KeelDeadLettersRising", "KeelReviewBacklogOverdue", "KeelAuditVerificationStale", "KeelCanaryRolledBack",
            "KeelBudgetNearlySpent"} <= {rule["alert"] for rule in rules}  # fmt: skip
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("page", "ticket") and rule["annotations"]["summary"]
        assert series_named(rule["expr"]), rule["alert"]


def test_the_reader_of_expressions_finds_metric_names_only():
    expr = 'sum by (pipeline) (rate(keel_runs_finished_total{status="failed"}[15m])) / ignoring(x) up > 0.1'
    assert series_named(expr) == {"keel_runs_finished_total", "up"}


@pytest.mark.django_db(transaction=True)
def test_every_series_the_rules_name_is_exposed_with_the_stored_state(client, settings, tmp_path):
    settings.KEEL_METRICS_TOKEN, settings.KEEL_METRICS_ALLOWED_NETWORKS = TOKEN, []
    settings.KEEL_CHECKPOINT_KEY, settings.KEEL_CHECKPOINT_DIR = "checkpoint-key-for-tests-0123456789", tmp_path
    call_command("keel_demo", stdout=io.StringIO())
    pipeline = Pipeline.objects.get(slug="support-triage")
    # A canary at 25% of the live release itself, judged after one run (the watch compares it with its limits).
    deployment = Deployment.objects.get(pipeline=pipeline, environment="production")
    Deployment.objects.filter(pk=deployment.pk).update(
        canary_release=deployment.release, canary_share=Decimal(25), canary_started_at=timezone.now()
    )
    ChangePolicy.objects.create(workspace=pipeline.workspace, pipeline=pipeline, canary_min_runs=1)
    call_command("keel_demo", "--runs", "4", "--inline", stdout=io.StringIO())
    run = Run.objects.filter(pipeline=pipeline).first()
    before = scrape(client)
    # A dead letter, a budget, the canary failing past its limit; a check and a checkpoint.
    Delivery.objects.create(run=run, position=99, channel="webhook", url="https://crm.example/hook",
                            status=Delivery.Status.FAILED, payload_sha256="0" * 64)  # fmt: skip
    budget = Budget.objects.create(pipeline=pipeline, unit=Budget.Unit.TOKENS, soft_limit=Decimal(500),
                                   hard_limit=Decimal(2000))  # fmt: skip
    during = scrape(client)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.FAILED)
    assert canaries_watch() == [pipeline.pk]
    audit_chain_check()
    audit_checkpoint_write()
    after = scrape(client)

    assert value(during, "keel_canary_share_ratio", pipeline=pipeline.slug, environment="production") == 0.25
    assert value(after, "keel_canary_share_ratio", pipeline=pipeline.slug, environment="production") == 0
    trigger = {"pipeline": pipeline.slug, "kind": "canary", "trigger": "automatic"}
    assert value(after, "keel_rollbacks_total", **trigger) - value(before, "keel_rollbacks_total", **trigger) == 1
    assert value(after, "keel_dead_letters", pipeline=pipeline.slug) == DeadLetter.objects.count() == 1
    spend = budget_spend(budget=budget)
    assert spend > 0
    for limit, amount in (("soft", budget.soft_limit), ("hard", budget.hard_limit)):
        share = value(after, "keel_budget_used_ratio", scope="pipeline", name=pipeline.slug, unit="tokens", limit=limit)
        assert share == pytest.approx(float(spend / amount))
    assert value(after, "keel_audit_verification_age_seconds") >= 0
    assert value(after, "keel_audit_checkpoint_age_seconds") >= 0
    assert value(after, "keel_audit_chain_broken") == 0
    delta = value(after, "keel_audit_verifications_total", result="intact") - value(
        before, "keel_audit_verifications_total", result="intact"
    )
    assert delta == 1

    exposed = names(after)
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    for rule in rules:
        assert series_named(rule["expr"]) <= exposed, (rule["alert"], series_named(rule["expr"]) - exposed)

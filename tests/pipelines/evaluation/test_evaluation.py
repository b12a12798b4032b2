"""The evaluation gate: case sets imported from CSV or JSONL, a sandbox that
leaves nothing behind, and results compared case by case with production."""

import io
import json

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.context import acting_as
from audit.models import AuditEvent
from pipelines.evaluation.services import evaluation_case_from_run, evaluation_cases_import
from pipelines.models import Delivery, EvaluationCase, Run, StepRun
from pipelines.releases.cut import release_cut
from tests import factories
from tests.pipelines.webhook_server import WebhookServer
from tests.releasing import classifier_pipeline, evaluate_now, prompt_edit, release_to_production

JSONL = "\n".join(
    json.dumps(case)
    for case in [
        {"name": "parcel", "input": {"subject": "Where is my parcel? The tracking is stuck"},
         "expected_label": "shipping"},
        {"name": "invoice", "input": {"subject": "My invoice shows a wrong charge"}, "expected_label": "billing",
         "forbidden_phrases": ["guarantee"], "max_length": 2000},
        {"name": "shape", "input": {"subject": "Hello"},
         "output_schema": {"type": "object", "required": ["label", "confidence"]}},
    ]
)  # fmt: skip

CSV = """name,input,expected_label,required_phrases,max_length
login,"{""subject"": ""I cannot log in to my account""}",account,account|label,
short,"{""subject"": ""Refund please""}",refund,,5
"""


@pytest.fixture
def pipeline(acme, superuser):
    return classifier_pipeline(acme, actor=superuser)


def test_jsonl_and_csv_import_every_case_with_its_expectations(pipeline, author):
    assert evaluation_cases_import(pipeline=pipeline, actor=author, text=JSONL, fmt="jsonl") == 3
    assert evaluation_cases_import(pipeline=pipeline, actor=author, text=CSV, fmt="csv") == 2
    login = EvaluationCase.objects.get(name="login")
    assert login.input == {"subject": "I cannot log in to my account"} and login.required_phrases == [
        "account",
        "label",
    ]
    assert EvaluationCase.objects.get(name="short").max_length == 5
    assert AuditEvent.objects.filter(action="evaluation_cases.imported").count() == 2


@pytest.mark.parametrize(
    ("text", "fmt", "message"),
    [
        ('{"name": "a", "input": {"subject": "x"}}\nnot json', "jsonl", "line 2: not JSON"),
        ('{"name": "a"}', "jsonl", "line 1: name and input are required"),
        ('{"name": "a", "input": [1]}', "jsonl", "line 1: input: The input must be a JSON object"),
        ('{"name": "a", "input": {}, "colour": "red"}', "jsonl", "line 1: unknown fields colour"),
        ('{"name": "a", "input": {}, "output_schema": {"type": 5}}', "jsonl", "line 1: output_schema: Invalid JSON"),
        ('{"name": "a", "input": {}}\n{"name": "a", "input": {}}', "jsonl", "line 2: a case named 'a' exists"),
        ("name,input\nb,{broken", "csv", "line 2: input is not JSON"),
        ("name,input,max_length\nb,{},many", "csv", "line 2: max_length must be a whole number"),
        ('{"name": "a", "input": {"id": 9007199254740993}}', "jsonl", "line 1: input.id: is the whole number"),
        ('{"name": "a", "input": {"x": 1e400}}', "jsonl", "line 1: input.x: is not a finite number"),
    ],
)
def test_a_bad_file_is_refused_whole_naming_the_line_and_field(pipeline, author, text, fmt, message):
    with pytest.raises(ValidationError) as refused:
        evaluation_cases_import(pipeline=pipeline, actor=author, text=text, fmt=fmt)
    assert any(message in m for m in refused.value.messages), refused.value.messages
    assert not EvaluationCase.objects.exists()


def test_importing_needs_the_change_right(pipeline, auditor):
    with pytest.raises(PermissionDenied):
        evaluation_cases_import(pipeline=pipeline, actor=auditor, text=JSONL, fmt="jsonl")


def test_evaluation_runs_every_case_in_a_sandbox_that_leaves_nothing_behind(pipeline, author, monkeypatch):
    monkeypatch.setenv("TEST_EVAL_SECRET", "evaluation-secret")
    evaluation_cases_import(pipeline=pipeline, actor=author, text=JSONL, fmt="jsonl")
    with WebhookServer() as server:
        store = pipeline.steps.get(name="store")
        with acting_as(author):
            credential = factories.credential_in(pipeline.workspace, "TEST_EVAL_SECRET")
            store.config = {"channel": "webhook", "url": server.url, "credential": credential}
            store.save()
        release = release_cut(pipeline=pipeline, actor=author)
        evaluation = evaluate_now(release=release, actor=author)
        assert server.requests == []  # the deliver step's consumer is never called
    assert (evaluation.cases, evaluation.passed, evaluation.baseline) == (3, 3, None)
    assert not Run.objects.exists() and not StepRun.objects.exists() and not Delivery.objects.exists()
    results = {r.case.name: r for r in evaluation.results.select_related("case")}
    assert results["parcel"].output["label"] == "shipping" and results["parcel"].comparison == "new"
    assert AuditEvent.objects.filter(action="release.evaluated").get().payload_data["passed"] == 3


def test_results_are_compared_case_by_case_with_productions_release(pipeline, author):
    evaluation_cases_import(pipeline=pipeline, actor=author, text=JSONL, fmt="jsonl")
    live = release_cut(pipeline=pipeline, actor=author)
    release_to_production(live)
    prompt_edit(pipeline, actor=author, body="Length: {{ subject | length }}")
    candidate = release_cut(pipeline=pipeline, actor=author)
    evaluation = evaluate_now(release=candidate, actor=author)
    assert evaluation.baseline == live
    comparisons = dict(evaluation.results.values_list("case__name", "comparison"))
    assert comparisons == {"parcel": "broken", "invoice": "broken", "shape": "unchanged"}
    assert (evaluation.broken, evaluation.unchanged, evaluation.fixed) == (2, 1, 0)
    # Putting the words back fixes both against the broken release, were it live.
    prompt_edit(pipeline, actor=author, body="{{ subject }}")
    third = release_cut(pipeline=pipeline, actor=author)
    assert evaluate_now(release=third, actor=author).broken == 0


def test_a_failed_expectation_names_what_failed(pipeline, author):
    evaluation_cases_import(pipeline=pipeline, actor=author, text=CSV, fmt="csv")
    evaluation = evaluate_now(release=release_cut(pipeline=pipeline, actor=author), actor=author)
    short = evaluation.results.get(case__name="short")
    assert not short.passed and any("over the maximum 5" in f for f in short.failures)


def test_a_completed_run_becomes_a_case_in_one_call(pipeline, author, django_capture_on_commit_callbacks):
    from pipelines.runs.engine import run_execute, run_start

    release_to_production(release_cut(pipeline=pipeline, actor=author))
    with django_capture_on_commit_callbacks(execute=False):
        run, _ = run_start(pipeline=pipeline, input={"subject": "Parcel tracking"}, actor=None, trigger="api")
    run = run_execute(run.pk)
    case = evaluation_case_from_run(run=run, actor=author)
    assert (case.input, case.expected_label, case.source_run) == (run.input, "shipping", run)
    with pytest.raises(ValidationError, match="already a case"):
        evaluation_case_from_run(run=run, actor=author)


def test_the_admin_imports_a_file_and_shows_errors_without_saving(client, pipeline, author):
    client.force_login(author)
    url = reverse("admin:pipelines_evaluationcase_import")
    bad = SimpleUploadedFile("cases.jsonl", b'{"name": "a"}\n')
    page = client.post(url, {"pipeline": pipeline.pk, "file": bad}).content.decode()
    assert "name and input are required" in page and not EvaluationCase.objects.exists()
    good = SimpleUploadedFile("cases.csv", CSV.encode())
    response = client.post(url, {"pipeline": pipeline.pk, "file": good})
    assert response.status_code == 302 and EvaluationCase.objects.count() == 2


def test_the_review_page_shows_the_diff_against_production_and_the_evaluation(client, pipeline, author, lead):
    evaluation_cases_import(pipeline=pipeline, actor=author, text=io.StringIO(JSONL).read(), fmt="jsonl")
    release_to_production(release_cut(pipeline=pipeline, actor=author))
    prompt_edit(pipeline, actor=author, body="Customer wrote:\n{{ subject }}")
    candidate = release_cut(pipeline=pipeline, actor=author)
    evaluate_now(release=candidate, actor=author)
    client.force_login(lead)
    page = client.get(reverse("admin:pipelines_release_review", args=[candidate.pk])).content.decode()
    # The prompt's diff, coloured as the history's: the new line marked as added.
    assert '<span class="keel-diff-add">+Customer wrote:' in page
    assert "Passed 3 of 3 cases" in page and "is draft, not approved" in page

"""The demo triage pipeline's steps, chained on one ticket as the engine will run them."""

from pipelines.management.commands.keel_demo import CLASSIFY_PROMPT, DRAFT_PROMPT, LABELS, TICKET_SCHEMA
from pipelines.steps import execute_step, validate_step_config

from .helpers import fixed_model, make_ctx

BUILTIN = {
    "provider": "builtin",
    "model_version": "1",
    "base_url": "",
    "temperature": "0.00",
    "top_p": "1.00",
    "seed": None,
    "timeout_seconds": 30,
    "extra_params": {},
    "price_input_per_1k": "0.000000",
    "price_output_per_1k": "0.000000",
    "api_key_env": "",
}
CLASSIFY = {"slug": "ticket-classify", "body": CLASSIFY_PROMPT, "variables": ["labels", "subject", "body"]}
DRAFT = {"slug": "reply-draft", "body": DRAFT_PROMPT, "variables": ["label", "subject", "body"]}
# The steps and policy keel_demo creates, as a release snapshot holds them (deliver is not a pure step).
STEPS = [
    ("validate", {}, None, None),
    ("redact", {"fields": ["body"], "builtin": ["email", "phone", "card"]}, None, None),
    (
        "model",
        {"output_field": "classification", "variables": {"labels": LABELS}},
        CLASSIFY,
        {**BUILTIN, "model_name": "keyword-classifier", "max_tokens": 64},
    ),
    ("parse", {"format": "label_confidence", "input_field": "classification", "labels": LABELS}, None, None),
    ("model", {"output_field": "draft"}, DRAFT, {**BUILTIN, "model_name": "template-drafter", "max_tokens": 400}),
    ("gate", {}, None, None),
]
POLICY = {
    "review_mode": "exceptions",
    "confidence_threshold": "0.750",
    "rules": [
        {"field": "label", "operator": "in", "value": ["refund", "complaint"]},
        {"field": "draft", "operator": "contains", "value": "guarantee"},
    ],
    "sample_rate": "0.100",
    "required_approvals": 1,
    "review_deadline_hours": 4,
}
TICKET = {
    "subject": "Refund please",
    "body": "Order 10042 arrived broken. Reach me at ann@example.com or +44 20 7946 0958.",
    "customer_email": "ann@example.com",
    "order_id": "10042",
    "channel": "email",
}
DRAFT_TEXT = "Dear customer, we are sorry your order arrived broken. A colleague will check your refund."


def run_demo(ticket: dict, call_model) -> tuple[dict, list]:
    document, results = ticket, []
    for position, (kind, config, prompt, model) in enumerate(STEPS, start=1):
        validate_step_config(kind, config)  # the configs here are ones keel_demo could save
        step = {"kind": kind, "name": kind, "config": config, "prompt": prompt, "model": model}
        ctx = make_ctx(
            step=step,
            step_position=position,
            policy=POLICY,
            input_schema=TICKET_SCHEMA,
            call_model=call_model,
            run_id=7,
        )
        result = execute_step(kind, document, ctx)
        document = result.output
        results.append(result)
    return document, results


def test_a_refund_ticket_is_classified_drafted_and_held_by_the_demo_rule():
    calls = []
    final, results = run_demo(TICKET, fixed_model("label: refund\nconfidence: 0.91", DRAFT_TEXT, calls=calls))

    assert final == {
        **TICKET,
        "body": "Order 10042 arrived broken. Reach me at [REDACTED:email] or [REDACTED:phone].",
        "_redactions": {"body": {"email": 1, "phone": 1}},
        "classification": "label: refund\nconfidence: 0.91",
        "label": "refund",
        "confidence": 0.91,
        "parse_uncertain": False,
        "draft": DRAFT_TEXT,
    }
    classify, draft = (request.messages[0]["content"] for request in calls)
    assert classify.startswith("Classify this support ticket as one of: billing, refund, shipping, technical,")
    assert "[REDACTED:email]" in classify and "ann@example.com" not in classify
    assert "classified as refund." in draft
    assert [request.model_name for request in calls] == ["keyword-classifier", "template-drafter"]
    assert all(request.seed == 1234 for request in calls)

    decision = results[-1].decision
    assert decision == {
        "passed": False,
        "reasons": ["rule"],
        "rule_hits": [POLICY["rules"][0]],
        "confidence": 0.91,
        "sampled": False,
        "review_mode": "exceptions",
    }
    assert [len(result.recordings) for result in results] == [0, 0, 1, 0, 1, 0]
    assert sum(result.cost for result in results) == 0.5


def test_a_confident_shipping_ticket_passes_the_gate():
    final, results = run_demo(
        {**TICKET, "subject": "Where is my parcel?"}, fixed_model("label: shipping\nconfidence: 0.88", "On its way.")
    )
    assert final["label"] == "shipping"
    assert results[-1].decision["passed"] is True and results[-1].decision["reasons"] == []


def test_the_chain_is_deterministic():
    def run():
        return run_demo(TICKET, fixed_model("label: refund\nconfidence: 0.91", DRAFT_TEXT))

    (first, first_results), (second, second_results) = run(), run()
    assert first == second
    assert [r.recordings for r in first_results] == [r.recordings for r in second_results]

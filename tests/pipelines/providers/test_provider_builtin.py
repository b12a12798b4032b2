import re

import jinja2
import pytest

from pipelines.management.commands.keel_demo import CLASSIFY_PROMPT, DRAFT_PROMPT, LABELS
from pipelines.providers import ModelRequest, ProviderError, call_model

OUTPUT_FORMAT = re.compile(r"label: (?P<label>[a-z_-]+)\nconfidence: (?P<confidence>[01]\.\d\d)")

TICKETS = {
    "refund": ("Refund for a broken blender", "It arrived broken. I returned it last week and want my money back."),
    "shipping": ("Where is my parcel?", "The tracking page has not changed for five days and nothing has arrived."),
    "account": ("Can't log in", "Every time I try to sign in it says my password is wrong, even after a reset."),
    "billing": ("Invoice INV-2041 charged twice", "My card was charged twice. Please send a receipt with VAT."),
    "complaint": ("Absolutely unacceptable", "The worst service ever. Your agent was rude; I am very disappointed."),
    "technical": ("App crashes on start", "Since Tuesday the app crashes with an error as soon as I open it."),
    "other": ("Opening hours", "Hi, are you open on Sundays? Thanks!"),
}


def render(template: str, **variables) -> str:
    return jinja2.Environment().from_string(template).render(**variables)


def request_for(model_name: str, prompt: str, *, seed: int = 7, max_tokens: int = 400, **fields) -> ModelRequest:
    return ModelRequest(
        provider="builtin",
        model_name=model_name,
        model_version="1",
        messages=({"role": "system", "content": "You are a support assistant."}, {"role": "user", "content": prompt}),
        temperature=0.0,
        top_p=1.0,
        max_tokens=max_tokens,
        seed=seed,
        timeout_seconds=30,
        **fields,
    )


def classify(subject: str, body: str, *, labels=LABELS, seed: int = 7) -> tuple[str, float]:
    prompt = render(CLASSIFY_PROMPT, labels=labels, subject=subject, body=body)
    match = OUTPUT_FORMAT.fullmatch(call_model(request_for("keyword-classifier", prompt, seed=seed)).text)
    assert match, "the classifier's answer is not in the format the parse step reads"
    return match["label"], float(match["confidence"])


def draft(label: str, subject: str, body: str, *, seed: int = 7) -> str:
    prompt = render(DRAFT_PROMPT, label=label, subject=subject, body=body)
    return call_model(request_for("template-drafter", prompt, seed=seed)).text


@pytest.mark.parametrize("expected", list(TICKETS))
def test_it_labels_realistic_tickets_sensibly(expected):
    label, confidence = classify(*TICKETS[expected])

    assert label == expected
    if expected == "other":
        assert confidence == 0.35  # nothing matched: low, so a threshold sends it to review
    else:
        assert 0.6 <= confidence < 0.95


def test_clear_evidence_gives_more_confidence_than_a_single_keyword():
    _, single = classify("Question", "Is there an app?")
    _, clear = classify("App crash", "The app crashes with an error, it is a bug.")

    assert single < clear


def test_a_tie_goes_to_the_label_named_first_in_the_prompt():
    subject, body = "Help", "I was charged for the delivery."  # billing: charged, shipping: delivery

    assert classify(subject, body, labels=["billing", "shipping"]) == ("billing", 0.40)
    assert classify(subject, body, labels=["shipping", "billing"]) == ("shipping", 0.40)


def test_it_only_answers_with_labels_the_prompt_allows():
    label, _ = classify(*TICKETS["refund"], labels=["shipping", "other"])

    assert label == "shipping"  # "arrived"; refund is not on the list


def test_a_label_it_has_no_keywords_for_is_matched_by_its_name():
    label, _ = classify("Warranty question", "Is the kettle still under warranty?", labels=["warranty", "other"])

    assert label == "warranty"


def test_the_classifier_output_is_exactly_two_lines():
    prompt = render(CLASSIFY_PROMPT, labels=LABELS, subject="Refund", body="Please refund me.")

    assert call_model(request_for("keyword-classifier", prompt)).text == "label: refund\nconfidence: 0.81"


def test_it_drafts_a_polite_reply_that_names_the_subject_and_signs_off():
    text = draft("shipping", *TICKETS["shipping"])

    assert text.startswith(("Hello,", "Hi there,", "Dear customer,"))
    assert 'about "Where is my parcel?"' in text
    assert "parcel" in text or "order" in text
    assert text.endswith("Kind regards,\nThe support team")


@pytest.mark.parametrize("label", [*LABELS, "unheard-of"])
def test_drafts_never_promise_refunds_dates_or_guarantees(label):
    text = draft(label, "Refund by Friday?", "I want a refund by Friday, guaranteed.").lower()
    reply = text.split('about "refund by friday?"', 1)[1]  # what the model wrote, not the quoted subject

    for promise in ("will refund", "will be refunded", "guarantee", "by friday", "tomorrow", "within"):
        assert promise not in reply


def test_the_seed_may_change_the_greeting_but_not_the_substance():
    drafts = {draft("billing", *TICKETS["billing"], seed=seed) for seed in range(6)}
    bodies = {text.split("\n", 1)[1] for text in drafts}

    assert 2 <= len(drafts) <= 3
    assert len(bodies) == 1


def test_it_refuses_an_unknown_model_by_name():
    with pytest.raises(ProviderError, match="gpt-7") as raised:
        call_model(request_for("gpt-7", "Hello"))

    assert raised.value.transient is False


def test_it_records_openai_shaped_bodies_tokens_and_cost():
    request = request_for(
        "keyword-classifier", "Classify as one of: a, b.", price_input_per_1k=2.0, price_output_per_1k=4.0
    )

    response = call_model(request)

    assert response.request_body == {
        "model": "keyword-classifier",
        "messages": [dict(message) for message in request.messages],
        "temperature": 0.0,
        "top_p": 1.0,
        "max_tokens": 400,
        "seed": 7,
    }
    body = response.response_body
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-builtin-")
    assert body["choices"][0]["message"] == {"role": "assistant", "content": response.text}
    assert body["usage"] == {"prompt_tokens": 15, "completion_tokens": 6, "total_tokens": 21}
    # 5 + 6 words -> 7 + 8 tokens in; 4 words -> 6 tokens out
    assert (response.input_tokens, response.output_tokens) == (15, 6)
    assert response.cost == pytest.approx(15 / 1000 * 2.0 + 6 / 1000 * 4.0)


def test_it_stops_at_max_tokens_like_a_real_model():
    response = call_model(
        request_for("template-drafter", render(DRAFT_PROMPT, label="refund", subject="x", body="y"), max_tokens=10)
    )

    assert response.output_tokens <= 10
    assert response.text == "Hi there,\n\nThank you for contacting us"  # 7 words, 10 tokens
    assert response.response_body["choices"][0]["finish_reason"] == "length"


def test_the_same_request_gives_a_byte_identical_response():
    words = ["refund", "parcel", "invoice", "password", "crash", "terrible", "hello", "money back", "sign in", "app"]
    for i in range(100):
        subject = " ".join(words[(i + k) % len(words)] for k in range(i % 3 + 1))
        body = " ".join(words[(i * 7 + k) % len(words)] for k in range(i % 11))
        model = "keyword-classifier" if i % 2 else "template-drafter"
        template = CLASSIFY_PROMPT if i % 2 else DRAFT_PROMPT
        prompt = render(template, labels=LABELS, label=LABELS[i % len(LABELS)], subject=subject, body=body)

        first = call_model(request_for(model, prompt, seed=i * 7919))
        second = call_model(request_for(model, prompt, seed=i * 7919))

        assert repr(first) == repr(second)
        assert first == second


def test_a_different_request_gives_a_different_response_id():
    prompt = render(CLASSIFY_PROMPT, labels=LABELS, subject="Refund", body="Please refund me.")

    first = call_model(request_for("keyword-classifier", prompt, seed=1))
    second = call_model(request_for("keyword-classifier", prompt, seed=2))

    assert first.text == second.text
    assert first.response_body["id"] != second.response_body["id"]


def test_extra_params_are_recorded_but_may_not_replace_what_the_release_fixes():
    recorded = call_model(request_for("keyword-classifier", "Hi", extra_params={"user": "u-1"})).request_body
    assert recorded["user"] == "u-1"

    with pytest.raises(ProviderError, match="seed") as raised:
        call_model(request_for("keyword-classifier", "Hi", extra_params={"seed": 1}))

    assert raised.value.transient is False

"""Built-in models: deterministic, local, no network.

They let the demo and the tests run a whole pipeline without an API key, and
they record the same shapes as the OpenAI-compatible provider (an OpenAI-style
request body and chat.completion reply), so steps, replay and the admin never
need to know which provider answered. Both models read only the last user
message and the seed: the same request always gives a byte-identical response.

- ``keyword-classifier`` answers ``label: <label>\\nconfidence: <0.xx>``.
- ``template-drafter`` answers a short polite reply built from a per-label template.
"""

import functools
import hashlib
import json
import re

from pipelines.providers.base import ModelRequest, ModelResponse, ProviderError, cost_of

# Keywords per demo label, matched as whole words (plus a plural, past-tense or
# -ing ending), case-insensitively; each stretch of text counts once per label, so
# "charged" is one hit, not one for "charge" and one for "charged". "other" has
# none: it is what nothing matched.
KEYWORDS: dict[str, tuple[str, ...]] = {
    "billing": ("invoice", "bill", "billing", "charge", "overcharge", "payment", "pay", "paid", "vat", "receipt",
                "subscription", "price"),
    "refund": ("refund", "money back", "return", "chargeback", "reimburse", "reimbursement", "send it back"),
    "shipping": ("delivery", "deliver", "parcel", "package", "tracking", "shipped", "shipping", "shipment",
                 "arrive", "courier", "dispatch", "in the post"),
    "technical": ("error", "crash", "bug", "login fail", "app", "website", "not working", "doesn't work",
                  "does not work", "loading", "freeze", "frozen", "install"),
    "account": ("password", "email change", "change my email", "account", "sign in", "sign-in", "log in", "login",
                "username", "profile", "locked out", "two-factor", "2fa"),
    "complaint": ("unacceptable", "terrible", "disappointed", "disappointing", "complain", "complaint", "awful",
                  "worst", "rude", "furious", "ridiculous", "outrageous", "fed up", "never again", "poor service"),
    "other": (),
}  # fmt: skip
FALLBACK_LABEL = "other"
# Confidence when no keyword matched: low enough for any sensible review threshold.
NO_MATCH_CONFIDENCE = 0.35
# A tie between the two best labels: barely better than no match.
TIE_CONFIDENCE = 0.40
# The subject is the customer's own summary, so its words count double.
SUBJECT_WEIGHT = 2

GREETINGS = ("Hello,", "Hi there,", "Dear customer,")
# Per label: what we are doing about it. None of them promises a refund, a date or an outcome.
TEMPLATES: dict[str, str] = {
    "billing": (
        "We are checking the charges on your account against your invoices and will explain what we find. "
        "If you have a receipt or invoice number to hand, please reply with it; it helps us look faster."
    ),
    "refund": (
        "We have received your request. A member of our team reviews every refund request individually "
        "and will write to you with the outcome once the review is complete."
    ),
    "shipping": (
        "We are looking into where your order is and will contact the carrier if needed. "
        "We will update you as soon as we have news; if you have an order or tracking number, please include it."
    ),
    "technical": (
        "Sorry for the trouble. Could you tell us which device, browser or app version you use, and the exact "
        "error message you see? That helps us reproduce the problem and find a fix."
    ),
    "account": (
        "For your security we never ask for your password. If you cannot sign in, the 'Forgot password' link "
        "on the sign-in page sends a reset e-mail; if that does not help, reply here and we will verify your "
        "identity and help you from there."
    ),
    "complaint": (
        "We are sorry that your experience fell short of what you expected. Your message has been passed to a "
        "team lead, who will look into what happened and reply to you personally."
    ),
    "other": "Your message has been passed to the right team, and someone will reply to you as soon as they can.",
}
SIGN_OFF = "Kind regards,\nThe support team"
# Request fields the release fixes; extra_params may add to them, never replace them.
FIXED_FIELDS = ("model", "messages", "temperature", "top_p", "max_tokens", "seed")

_LABELS_LINE = re.compile(r"as one of:\s*(?P<labels>[^\n.]+)", re.IGNORECASE)
_DRAFT_LABEL = re.compile(r"classified as\s+(?P<label>[\w-]+)", re.IGNORECASE)
_SUBJECT = re.compile(r"^Subject:[ \t]*(?P<subject>.*)$", re.MULTILINE)
_MESSAGE = re.compile(r"^Message:[ \t]*\n?(?P<message>.*)\Z", re.MULTILINE | re.DOTALL)
_WORD = re.compile(r"\S+")


def complete(request: ModelRequest) -> ModelResponse:
    models = {"keyword-classifier": _classify, "template-drafter": _draft}
    if request.model_name not in models:
        known = ", ".join(sorted(models))
        raise ProviderError(f"Unknown built-in model {request.model_name!r} (known: {known}).", transient=False)
    clashes = sorted(set(request.extra_params) & set(FIXED_FIELDS))
    if clashes:  # the same rule as the openai provider's, so a config behaves alike on both
        raise ProviderError(f"extra_params may not override {', '.join(clashes)}.", transient=False)
    text, finish_reason = _truncate(models[request.model_name](_prompt(request), request.seed), request.max_tokens)
    request_body = {
        "model": request.model_name,
        "messages": [dict(message) for message in request.messages],
        "temperature": float(request.temperature),
        "top_p": float(request.top_p),
        "max_tokens": request.max_tokens,
        "seed": request.seed,
        **request.extra_params,
    }
    input_tokens = sum(estimate_tokens(str(m.get("content", ""))) for m in request.messages)
    output_tokens = estimate_tokens(text)
    canonical = json.dumps(request_body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    response_body = {
        "id": "chatcmpl-builtin-" + hashlib.sha256(canonical.encode()).hexdigest()[:24],
        "object": "chat.completion",
        "created": 0,  # a timestamp would break byte-identical replay
        "model": request.model_name,
        "system_fingerprint": f"builtin-{request.model_name}-{request.model_version or '1'}",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
    }
    return ModelResponse(
        text=text,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=cost_of(request, input_tokens, output_tokens),
        request_body=request_body,
        response_body=response_body,
        attempts=(),  # nothing went over a network
    )


def estimate_tokens(text: str) -> int:
    """Whitespace-separated words × 4/3, rounded up: close to what BPE tokenizers
    give for English prose, and stable across platforms."""
    return -(-len(_WORD.findall(text)) * 4 // 3)


def _prompt(request: ModelRequest) -> str:
    for message in reversed(request.messages):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


def _truncate(text: str, max_tokens: int) -> tuple[str, str]:
    """Cut the answer at the last whole word within ``max_tokens``, as a real
    model stops at its limit, and report it the way OpenAI does."""
    words = list(_WORD.finditer(text))
    if estimate_tokens(text) <= max_tokens:
        return text, "stop"
    keep = max(0, max_tokens) * 3 // 4
    return (text[: words[keep - 1].end()] if keep else ""), "length"


def _ticket(prompt: str) -> tuple[str, str]:
    """The ticket's subject and message; without those markers, the whole prompt is the message."""
    prompt = prompt.replace("\u2019", "'")  # typographic apostrophes, so "doesn’t work" matches
    subject = _SUBJECT.search(prompt)
    message = _MESSAGE.search(prompt)
    if not subject and not message:
        return "", _LABELS_LINE.sub("", prompt)
    return (subject["subject"].strip() if subject else ""), (message["message"].strip() if message else "")


def _classify(prompt: str, seed: int) -> str:
    # The seed is not needed: ties go to the label named first in the prompt,
    # which is as deterministic and easier to explain to a reviewer.
    labels = _labels(prompt)
    subject, message = _ticket(prompt)
    scores = [SUBJECT_WEIGHT * _hits(label, subject) + _hits(label, message) for label in labels]
    best = max(scores, default=0)
    if best == 0:
        label = FALLBACK_LABEL if FALLBACK_LABEL in labels else labels[0]
        return f"label: {label}\nconfidence: {NO_MATCH_CONFIDENCE:.2f}"
    index = scores.index(best)
    second = max((score for i, score in enumerate(scores) if i != index), default=0)
    # Grows with the margin over the runner-up and with the amount of evidence,
    # never reaching certainty: one keyword alone gives 0.68, three clear ones 0.81.
    confidence = TIE_CONFIDENCE + (0.95 - TIE_CONFIDENCE) * (best - second) / (best + 1)
    return f"label: {labels[index]}\nconfidence: {confidence:.2f}"


def _labels(prompt: str) -> list[str]:
    """The labels listed after "as one of:", in order; the built-in table's labels when the prompt lists none."""
    match = _LABELS_LINE.search(prompt)
    labels = [] if not match else [label.strip().strip(".").lower() for label in match["labels"].split(",")]
    labels = list(dict.fromkeys(label for label in labels if label))
    return labels or list(KEYWORDS)


def _hits(label: str, text: str) -> int:
    # A label the table does not know is matched by its own name.
    keywords = KEYWORDS.get(label, (label,))
    return len(_pattern(keywords).findall(text)) if keywords else 0


@functools.cache
def _pattern(keywords: tuple[str, ...]) -> re.Pattern:
    # Longest first, so where keywords overlap ("bill", "billing") the longer one is the match.
    alternatives = "|".join(re.escape(keyword) for keyword in sorted(keywords, key=len, reverse=True))
    return re.compile(r"\b(?:" + alternatives + r")(?:s|es|d|ed|ing)?\b", re.IGNORECASE)


def _draft(prompt: str, seed: int) -> str:
    match = _DRAFT_LABEL.search(prompt)
    label = match["label"].lower() if match else FALLBACK_LABEL
    subject, _ = _ticket(prompt)
    about = f'about "{subject}"' if subject else "about your message"
    greeting = GREETINGS[seed % len(GREETINGS)]
    body = TEMPLATES.get(label, TEMPLATES[FALLBACK_LABEL])
    return f"{greeting}\n\nThank you for contacting us {about}. {body}\n\n{SIGN_OFF}"

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.canonical import canonical_bytes
from pipelines.steps.base import StepError
from pipelines.steps.redact import execute

from .helpers import make_ctx

SIMPLE_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


def redact(document: dict, **config) -> dict:
    return execute(document, make_ctx(kind="redact", config=config)).output


def masked(text: str, **config) -> str:
    return redact({"body": text}, fields=["body"], **config)["body"]


def test_it_masks_emails_phones_and_cards_and_counts_them():
    document = {
        "body": "I'm ann@example.com, call +1 (555) 123-4567 or 020 7946 0958; card 4111 1111 1111 1111.",
        "subject": "Refund for ann@example.com",
    }
    output = redact(document, fields=["body"])
    assert output["body"] == ("I'm [REDACTED:email], call [REDACTED:phone] or [REDACTED:phone]; card [REDACTED:card].")
    assert output["subject"] == "Refund for ann@example.com"
    assert output["_redactions"] == {"body": {"card": 1, "email": 1, "phone": 2}}
    assert document["body"].startswith("I'm ann@")


@pytest.mark.parametrize(
    "text",
    [
        "Order 12345678 placed on 2024-01-15",
        "order ORD-555-123-4567 and invoice INV/2024/0042",
        "dates 15.01.2024, 01/02/2024, 2024-1-5 and time 12:30",
        "total 1,234.56 EUR, tracking 1Z999AA10123456784",
        "IP 192.168.1.10, version 1.2.3, id 0012345678",
        "a number that fails Luhn: 4111 1111 1111 1112",
    ],
)
def test_it_leaves_order_ids_dates_and_other_numbers_alone(text):
    assert masked(text) == text


@pytest.mark.parametrize(
    "phone",
    ["+44 20 7946 0958", "+4915112345678", "+1-800-555-0199", "(555) 123-4567", "555.123.4567", "07700 900123"],
)
def test_it_masks_common_phone_formats(phone):
    assert masked(f"call {phone} today") == "call [REDACTED:phone] today"


def test_it_masks_card_numbers_in_groups_or_in_one_run():
    assert masked("4111-1111-1111-1111 or 5500005555555559") == "[REDACTED:card] or [REDACTED:card]"


def test_it_uses_only_the_chosen_builtins():
    assert masked("ann@example.com +44 20 7946 0958", builtin=["phone"]) == "ann@example.com [REDACTED:phone]"
    assert masked("ann@example.com", builtin=[]) == "ann@example.com"


def test_custom_patterns_are_named_in_the_mask():
    output = redact(
        {"body": "Customer ACC-12345 and ACC-99999"},
        fields=["body"],
        builtin=[],
        patterns=[{"name": "account", "regex": r"ACC-\d{5}"}],
    )
    assert output["body"] == "Customer [REDACTED:account] and [REDACTED:account]"
    assert output["_redactions"] == {"body": {"account": 2}}


def test_without_fields_it_masks_every_top_level_text_field_but_underscored_ones():
    document = {"a": "x@y.io", "b": 3, "_source": "x@y.io", "c": {"d": "x@y.io"}}
    output = redact(document)
    assert output == {
        "a": "[REDACTED:email]",
        "b": 3,
        "_source": "x@y.io",
        "c": {"d": "x@y.io"},
        "_redactions": {"a": {"email": 1}},
    }


def test_a_dotted_field_reaches_nested_text_and_objects_are_masked_throughout():
    document = {"customer": {"email": "x@y.io", "notes": ["call 020 7946 0958", 7]}}
    output = redact(document, fields=["customer.email", "customer.notes"])
    assert output["customer"] == {"email": "[REDACTED:email]", "notes": ["call [REDACTED:phone]", 7]}
    assert output["_redactions"] == {"customer.email": {"email": 1}, "customer.notes": {"phone": 1}}


def test_a_missing_field_is_skipped_and_a_clean_one_is_recorded_as_scanned():
    output = redact({"body": "nothing here"}, fields=["body", "order_id"])
    assert output["_redactions"] == {"body": {}}


def test_a_second_redaction_adds_to_the_first_ones_counts():
    first = redact({"body": "a@b.io"}, fields=["body"])
    second = redact({**first, "body": first["body"] + " c@d.io"}, fields=["body"])
    assert second["_redactions"] == {"body": {"email": 2}}


def test_an_invalid_custom_regex_fails_naming_the_pattern():
    with pytest.raises(StepError, match="redact pattern 'broken' is not a valid regex"):
        redact({"body": "x"}, patterns=[{"name": "broken", "regex": "("}])


email = st.from_regex(r"[a-z0-9._+-]{1,10}@[a-z0-9-]{1,10}(\.[a-z]{2,5}){1,2}", fullmatch=True)
text_with_emails = st.lists(st.one_of(st.text(max_size=15), email), max_size=8).map("".join)


@given(text=text_with_emails)
def test_no_email_address_survives_in_a_redacted_field(text):
    assert not SIMPLE_EMAIL.search(masked(text))


@given(document=st.dictionaries(st.from_regex(r"[a-z_]{1,6}", fullmatch=True), text_with_emails, max_size=4))
def test_the_same_input_gives_the_same_bytes(document):
    first = canonical_bytes(redact(document))
    assert canonical_bytes(redact(document)) == first
    assert canonical_bytes(redact(dict(reversed(list(document.items()))))) == first

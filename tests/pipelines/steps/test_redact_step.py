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
    with pytest.raises(StepError, match="redact pattern 'broken' is not a valid regex for RE2"):
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


# The built-in patterns before they moved to RE2 (Python's re, with look-around):
# the RE2 forms must mask exactly what these did.
REFERENCE = {
    "email": re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+"),
    "card": re.compile(r"(?<![\w+.-])\d(?:[ -]?\d){12,18}(?![\w-]|[.,]\d)"),
    "phone": re.compile(
        r"(?<![\w+@/.,-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{1,12}(?:[ .-]\d{1,12})*(?![\w@/]|[.,-]\d)"
    ),
}


def reference_mask(text: str) -> str:
    from pipelines.steps.redact import BUILTINS

    for name in ("email", "card", "phone"):
        check = BUILTINS[name][1]
        text = REFERENCE[name].sub(lambda m, n=name, c=check: f"[REDACTED:{n}]" if c(m.group(0)) else m.group(0), text)
    return text


numbery_text = st.lists(
    st.sampled_from(
        [
            "4111 1111 1111 1111",
            "+44 20 7946 0958",
            "555.123.4567",
            "a@b.io",
            "12",
            "0",
            "-",
            ".",
            ",",
            " ",
            "+",
            "(",
            ")",
            "@",
            "/",
            "x",
            "é",
            "٣",
            "\n",
            "2024-01-15",
        ]
    ),  # fmt: skip
    max_size=20,
).map("".join)


@given(text=numbery_text)
def test_the_re2_built_ins_mask_what_the_look_around_patterns_masked(text):
    assert masked(text) == reference_mask(text)


def test_every_pattern_it_runs_is_an_re2_pattern():
    import re2

    from pipelines.steps.redact import _patterns

    config = {"patterns": [{"name": "nested", "regex": "(a+)+$"}]}
    assert all(isinstance(pattern, type(re2.compile("x"))) for _, pattern, *_ in _patterns(config))


def test_the_quadratic_email_input_at_the_upload_limit_is_scanned_once(settings):
    # Before RE2, every start in a 10 MiB run of local-part characters with no "@"
    # rescanned the rest of it: hours. The RE2 scan is linear, so this finishes
    # and finds nothing; with an address at the end, only the address is masked.
    size = settings.KEEL_DOCUMENT_MAX_BYTES
    text = "a." * (size // 2)
    assert masked(text, builtin=["email"]) == text
    output = redact({"body": text[:-20] + " ann@example.com"}, fields=["body"], builtin=["email"])
    assert output["body"].endswith(" [REDACTED:email]") and output["_redactions"] == {"body": {"email": 1}}


def test_dense_digit_input_is_taken_without_backtracking():
    # Every short run of digits is a candidate the checks refuse: the scan goes
    # on from each one's end, never back (the benchmark times this at 10 MiB).
    size = 256 * 1024
    for text in ("1 " * (size // 2), "1" * size, "(1) " * (size // 4), "1 1 1 1 1x" * (size // 10)):
        assert masked(text, builtin=["card", "phone"]) == text


def test_a_nested_quantifier_pattern_runs_on_re2_and_masks_what_it_matches():
    text = "a" * 30 + "!" + " then aaaa"
    assert masked(text, builtin=[], patterns=[{"name": "as", "regex": "(a+)+$"}]) == "a" * 30 + "! then [REDACTED:as]"


def test_a_custom_pattern_re2_cannot_run_fails_the_step_naming_it():
    with pytest.raises(StepError, match="redact pattern 'behind' is not a valid regex for RE2"):
        redact({"body": "x"}, patterns=[{"name": "behind", "regex": "(?<=a)b"}])


def test_an_empty_match_masks_nothing():
    assert masked("abc", builtin=[], patterns=[{"name": "empty", "regex": "x*"}]) == "abc"

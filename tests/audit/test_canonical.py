"""audit/canonical.py against an independent RFC 8785 implementation (the
``rfc8785`` package), and the hand-written envelope encoder against both."""

import json
from datetime import datetime

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from audit.canonical import canonical_bytes, canonical_text
from audit.chain import envelope_text

# I-JSON (RFC 7493): integers a double holds exactly, finite doubles, strings
# of scalar values (Hypothesis' text() never draws a lone surrogate).
SAFE_INT = 2**53 - 1
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-SAFE_INT, max_value=SAFE_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)


@given(json_values)
def test_it_writes_what_rfc8785_writes(value):
    assert canonical_bytes(value) == rfc8785.dumps(value)


@given(st.dictionaries(st.text(), json_scalars, max_size=8))
def test_it_sorts_keys_by_utf16_code_units(value):
    # Keys outside the BMP sort by their surrogates, before U+E000..U+FFFF.
    assert canonical_bytes(value) == rfc8785.dumps(value)


@given(json_values)
def test_its_text_reads_back_as_the_same_value(value):
    # 4.176125802579478e16 is written 41761258025794780: a reader takes numbers as doubles.
    assert json.loads(canonical_text(value), parse_int=float) == value


@pytest.mark.parametrize(
    ("number", "text"),
    [
        # The examples of RFC 8785 appendix B and section 3.2.2.3.
        (0.0, "0"),
        (-0.0, "0"),
        (5e-324, "5e-324"),
        (-5e-324, "-5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (9007199254740992.0, "9007199254740992"),
        (295147905179352830000.0, "295147905179352830000"),
        (1e21, "1e+21"),
        (999999999999999900000.0, "999999999999999900000"),
        (1e23, "1e+23"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (0.1 + 0.2, "0.30000000000000004"),
        (4.50, "4.5"),
        (2e-3, "0.002"),
        (0.000001234, "0.000001234"),
        (1.234e-7, "1.234e-7"),
        (333333333.3333332, "333333333.3333332"),
        (-1.0, "-1"),
        (123456789012345680000.0, "123456789012345680000"),
    ],
)
def test_it_writes_numbers_as_ecmascript_does(number, text):
    assert canonical_text(number) == text
    assert rfc8785.dumps(number).decode() == text


def test_it_matches_the_rfc8785_example_object():
    value = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_text(value) == expected


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_it_refuses_what_json_cannot_hold(number):
    with pytest.raises(ValueError):
        canonical_text({"x": number})


def test_it_refuses_keys_that_are_not_strings():
    with pytest.raises(TypeError):
        canonical_text({1: "one"})


# Ids and seqs are integers too: within I-JSON's range, as the chain contract says.
optional_id = st.none() | st.integers(min_value=0, max_value=SAFE_INT)
hex64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
envelopes = st.fixed_dictionaries(
    {
        "seq": st.integers(min_value=1, max_value=SAFE_INT),
        # ts and the two hashes always have these shapes; the encoder writes them
        # unescaped, and a tampered value of another shape is caught as a break.
        "ts": st.datetimes(min_value=datetime(1000, 1, 1)).map(lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
        "actor_id": optional_id,
        "actor_name": st.text(),
        "action": st.text(),
        "object_type": st.text(),
        "object_id": st.text(),
        "workspace_id": optional_id,
        "pipeline_id": optional_id,
        "payload_sha256": hex64,
        "prev_hash": hex64,
    }
)


@given(envelopes)
def test_the_envelope_encoder_writes_the_canonical_envelope(fields):
    nested = {key: value for key, value in fields.items() if key not in ("actor_id", "actor_name")}
    nested["actor"] = {"id": fields["actor_id"], "name": fields["actor_name"]}
    assert envelope_text(**fields) == canonical_text(nested)


@pytest.mark.parametrize("number", [2**53, -(2**53), 2**63 - 1, 10**30])
def test_it_refuses_integers_past_i_jsons_range(number):
    from audit.canonical import UnsafeNumber

    with pytest.raises(UnsafeNumber, match="outside"):
        canonical_text({"seed": number})
    with pytest.raises(UnsafeNumber):
        canonical_text([1, [number]])


def test_it_writes_the_largest_safe_integers_exactly():
    assert canonical_text([2**53 - 1, -(2**53 - 1)]) == "[9007199254740991,-9007199254740991]"


def test_json_safe_turns_only_the_unsafe_integers_into_strings():
    from audit.canonical import json_safe

    value = {"a": 2**53, "b": [2**53 - 1, -(2**60)], "c": True, "d": 1.5}
    assert json_safe(value) == {"a": "9007199254740992", "b": [2**53 - 1, "-1152921504606846976"], "c": True, "d": 1.5}

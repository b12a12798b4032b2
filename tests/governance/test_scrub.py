"""The one scrub applied where recordings are made."""

from governance.credential_sources import scrub


def test_it_removes_every_secret_from_a_document_its_keys_and_its_strings():
    secret = "sk-live-0123456789"
    document = {"text": f"a {secret} b {secret}", secret: [secret, 1, None, {"x": (secret,)}], "n": 2.5}
    scrubbed = scrub(document, [secret, ""])
    assert secret not in repr(scrubbed)
    assert scrubbed == {"text": "a [redacted] b [redacted]", "[redacted]": ["[redacted]", 1, None,
                        {"x": ("[redacted]",)}], "n": 2.5}  # fmt: skip


def test_without_a_secret_it_returns_the_value_unchanged():
    document = {"a": ["b"]}
    assert scrub(document, []) is document and scrub("text", [""]) == "text"

"""Replies a model server may send that cannot be used, each with the words
its ``invalid_response`` reason holds. Bodies are raw bytes where JSON
libraries would not write them (a lone surrogate's escape, NaN, 1e400).

REPLY_LIMIT is the KEEL_MODEL_REPLY_MAX_BYTES the tests run with."""

import json

from tests.pipelines.chat_server import Reply

REPLY_LIMIT = 256 * 1024
USAGE = '"usage": {"prompt_tokens": 5, "completion_tokens": 3}'


def _chat(content_json: str, usage: str = USAGE) -> bytes:
    """A chat.completion whose message content is ``content_json`` (JSON text, written as given)."""
    return f'{{"choices": [{{"message": {{"role": "assistant", "content": {content_json}}}}}], {usage}}}'.encode()


def _json(body: bytes, **kwargs) -> Reply:
    return Reply(body=body, content_type="application/json", **kwargs)


GOOD = _chat('"label: billing\\nconfidence: 0.90"')

BAD_REPLIES: dict[str, tuple[Reply, str]] = {
    "lone-surrogate-in-content": (_json(_chat('"\\ud83d"')), "lone surrogate"),
    "lone-surrogate-in-a-key": (_json(GOOD[:-1] + b', "\\udc00": 1}'), "lone surrogate"),
    "nul-in-content": (_json(_chat('"a\\u0000b"')), "NUL character"),
    "nan": (_json(_chat('"hi"', usage='"usage": {"prompt_tokens": NaN, "completion_tokens": 1}')), "NaN"),
    "infinity": (_json(GOOD[:-1] + b', "score": -Infinity}'), "Infinity"),
    "number-1e400": (_json(GOOD[:-1] + b', "score": 1e400}'), "out of range"),
    "integer-of-5000-digits": (_json(GOOD[:-1] + b', "n": ' + b"7" * 5000 + b"}"), "not usable JSON"),
    "token-count-past-the-column": (
        _json(_chat('"hi"', usage='"usage": {"prompt_tokens": 10000000000000, "completion_tokens": 1}')),
        "must be counts",
    ),
    "not-json": (_json(b"<html><body>502 Bad Gateway</body></html>"), "not usable JSON"),
    "not-utf-8": (_json(b'{"choices": [{"message": {"content": "caf\xe9"}}]}'), "not UTF-8"),
    "nested-100000-deep": (_json(b"[" * 100_000 + b"]" * 100_000), "nested"),
    "json-array": (_json(b"[1, 2, 3]"), "not a JSON object"),
    "no-choices": (_json(b'{"object": "chat.completion", "choices": []}'), "no choices"),
    "content-not-a-string": (_json(_chat("null")), "content is not a string"),
    "wrong-content-type": (Reply(body=GOOD, content_type="text/html"), "content type is text/html"),
    "no-content-type": (Reply(body=GOOD, content_type=""), "content type is missing"),
    "too-large": (_json(_chat(json.dumps("x" * 2 * REPLY_LIMIT))), f"larger than {REPLY_LIMIT} bytes"),
    "cut-off": (_json(GOOD, declared_length=len(GOOD) + 500), "broke off after"),
}

"""The anthropic provider against a loopback server that speaks the Messages API."""

import base64
import json

import pytest

from pipelines.providers import ModelRequest, ProviderError, call_model, exchange
from tests import factories
from tests.pipelines.bad_replies import BAD_REPLIES, REPLY_LIMIT
from tests.pipelines.chat_server import Reply
from tests.pipelines.provider_servers import AnthropicServer, anthropic_error, anthropic_message

KEY = "sk-ant-test-0123456789abcdef"
MESSAGES = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Classify: my parcel is late."})
RATE_LIMITS = {
    "anthropic-ratelimit-requests-limit": "50",
    "anthropic-ratelimit-requests-remaining": "0",
    "anthropic-ratelimit-requests-reset": "2026-12-06T10:00:30Z",
    "anthropic-ratelimit-tokens-remaining": "1200",
}
WORKSPACE: dict[str, int] = {}


@pytest.fixture
def server():
    with AnthropicServer(KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(exchange, "BACKOFF_BASE_SECONDS", 0.01)


@pytest.fixture(autouse=True)
def api_key(monkeypatch, db):
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", KEY)
    workspace = factories.WorkspaceFactory()
    factories.CredentialFactory(workspace=workspace, slug="anthropic", env_name="TEST_ANTHROPIC_KEY")
    WORKSPACE["id"] = workspace.pk


def request_for(server: AnthropicServer, **fields) -> ModelRequest:
    defaults = {
        "provider": "anthropic",
        "model_name": "claude-sonnet-4-5",
        "model_version": "20250929",
        "messages": MESSAGES,
        "temperature": 0.2,
        "top_p": 1.0,
        "max_tokens": 64,
        "seed": 1234,
        "timeout_seconds": 5,
        "base_url": server.base_url + "/",
        "credential": "anthropic",
        "workspace_id": WORKSPACE["id"],
        "price_input_per_1k": 3.0,
        "price_output_per_1k": 15.0,
    }
    return ModelRequest(**{**defaults, **fields})


def assert_key_nowhere(*recorded) -> None:
    assert KEY not in json.dumps(recorded, default=str)


def test_it_returns_the_message_text_with_tokens_and_cost(server):
    server.script = [anthropic_message("label: shipping\nconfidence: 0.91", input_tokens=1000, output_tokens=500)]

    response = call_model(request_for(server))

    assert response.text == "label: shipping\nconfidence: 0.91"
    assert (response.input_tokens, response.output_tokens) == (1000, 500)
    assert response.cost == pytest.approx(3.0 + 7.5)
    assert response.response_body["id"] == "msg_01TestMessage"
    assert [(a["status"], a["error"]) for a in response.attempts] == [(200, None)]


def test_it_sends_the_messages_api_body_exactly_as_recorded_with_the_key_only_in_its_header(server):
    server.script = [anthropic_message()]

    response = call_model(request_for(server, extra_params={"stop_sequences": ["\n\n"]}))

    [received] = server.requests
    assert received["path"] == "/v1/messages"
    assert received["headers"]["x-api-key"] == KEY
    assert received["headers"]["anthropic-version"] == "2023-06-01"
    assert "authorization" not in received["headers"]
    # The system turn goes in "system"; top_p at 1 is left out; the API takes no seed.
    assert received["body"] == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Classify: my parcel is late."}],
        "system": "Be brief.",
        "temperature": 0.2,
        "stop_sequences": ["\n\n"],
    }
    assert response.request_body == received["body"]
    assert_key_nowhere(response.request_body, response.response_body, response.attempts)


def test_a_top_p_below_one_and_an_api_version_are_sent(server):
    server.script = [anthropic_message()]

    call_model(request_for(server, top_p=0.5, api_version="2024-01-01"))

    [received] = server.requests
    assert received["body"]["top_p"] == 0.5
    assert received["headers"]["anthropic-version"] == "2024-01-01"


def test_prompt_cache_tokens_count_as_input(server):
    server.script = [anthropic_message(input_tokens=10, output_tokens=5, cache_creation_input_tokens=100,
                                       cache_read_input_tokens=1000)]  # fmt: skip

    response = call_model(request_for(server))

    assert (response.input_tokens, response.output_tokens) == (1110, 5)


def test_an_overloaded_529_is_retried_and_each_attempt_names_the_error_type(server):
    server.script = [anthropic_error(529, "overloaded_error", "Overloaded"), anthropic_message()]

    response = call_model(request_for(server))

    assert [(a["status"], a["error"]) for a in response.attempts] == [
        (529, "HTTP 529: overloaded_error: Overloaded"),
        (200, None),
    ]
    assert response.attempts[0]["headers"]["request-id"] == "req_011Test"
    assert len(server.requests) == 2


def test_a_429_waits_as_asked_and_its_rate_limit_headers_are_kept(server, monkeypatch):
    waits = []
    monkeypatch.setattr(exchange.time, "sleep", waits.append)
    limited = anthropic_error(429, "rate_limit_error", "Number of request tokens has exceeded your rate limit.",
                              headers={"retry-after": "7", **RATE_LIMITS})  # fmt: skip
    server.script = [limited, anthropic_message(headers={"anthropic-ratelimit-requests-remaining": "49"})]

    response = call_model(request_for(server))

    assert waits == [7.0]  # what the server asked, not the backoff
    first, second = response.attempts
    assert first["error"].startswith("HTTP 429: rate_limit_error: Number of request tokens")
    assert first["headers"] == {"retry-after": "7", "request-id": "req_011Test", **RATE_LIMITS}
    assert second["headers"] == {"anthropic-ratelimit-requests-remaining": "49"}


def test_it_gives_up_after_three_overloads_as_transient(server):
    server.script = [anthropic_error(529, "overloaded_error", "Overloaded")] * 2 + [
        anthropic_error(500, "api_error", "Internal server error")
    ]

    with pytest.raises(ProviderError, match=r"HTTP 500: api_error: .*gave up after 3 attempts") as raised:
        call_model(request_for(server))

    assert raised.value.transient is True
    assert [a["status"] for a in raised.value.attempts] == [529, 529, 500]


def test_an_invalid_request_is_permanent_and_named(server):
    server.script = [anthropic_error(400, "invalid_request_error", "max_tokens: 64000 > 8192"), anthropic_message()]

    with pytest.raises(ProviderError, match="HTTP 400: invalid_request_error: max_tokens: 64000 > 8192") as raised:
        call_model(request_for(server))

    assert raised.value.transient is False
    assert len(server.requests) == 1


def test_a_wrong_key_is_refused_by_the_server_and_never_recorded(server, monkeypatch):
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-wrong-key-000000")

    with pytest.raises(ProviderError, match="HTTP 401: authentication_error") as raised:
        call_model(request_for(server))

    assert raised.value.transient is False
    assert "sk-ant-wrong-key-000000" not in json.dumps([str(raised.value), raised.value.attempts])


def test_a_server_echoing_the_key_does_not_get_it_into_the_error(server):
    server.script = [anthropic_error(403, "permission_error", f"key {KEY} may not use this model")]

    with pytest.raises(ProviderError) as raised:
        call_model(request_for(server))

    assert "[redacted]" in str(raised.value)
    assert_key_nowhere(str(raised.value), raised.value.attempts)


def test_a_model_config_without_a_credential_sends_nothing(server):
    with pytest.raises(ProviderError, match="needs a credential") as raised:
        call_model(request_for(server, credential=""))

    assert raised.value.transient is False
    assert server.requests == []


def test_extra_params_may_not_replace_what_the_release_fixes(server):
    with pytest.raises(ProviderError, match="max_tokens, system"):
        call_model(request_for(server, extra_params={"system": "x", "max_tokens": 1, "metadata": {}}))

    assert server.requests == []


def test_a_host_the_workspace_does_not_allow_is_refused_before_sending(server):
    factories.WorkspaceFactory._meta.model.objects.filter(pk=WORKSPACE["id"]).update(allowed_hosts=["example.com"])

    with pytest.raises(ProviderError, match="egress refused"):
        call_model(request_for(server))

    assert server.requests == []


# The replies that fail before their shape is read apply to every provider; the shape's own below.
JSON_LEVEL = {case: value for case, value in BAD_REPLIES.items()
              if case not in ("no-choices", "content-not-a-string", "token-count-past-the-column")}  # fmt: skip


def _message(content: str, usage: str = '"usage": {"input_tokens": 5, "output_tokens": 3}') -> Reply:
    body = f'{{"type": "message", "role": "assistant", "content": {content}, {usage}}}'.encode()
    return Reply(body=body, content_type="application/json")


ANTHROPIC_SHAPE = {
    "content-not-a-list": (_message('"hi"'), "content is not a list of blocks"),
    "no-text-block": (_message('[{"type": "tool_use", "id": "t", "name": "x", "input": {}}]'), "no text block"),
    "text-not-a-string": (_message('[{"type": "text", "text": 5}]'), "no text block"),
    "no-usage": (_message('[{"type": "text", "text": "hi"}]', usage='"x": 1'), "usage is not an object"),
    "token-count-past-the-column": (
        _message('[{"type": "text", "text": "hi"}]', usage='"usage": {"input_tokens": 1e3, "output_tokens": 1}'),
        "must be counts",
    ),
    "an-error-with-status-200": (
        Reply(body={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        "the reply is an error: overloaded_error",
    ),
    "openai-shaped": (Reply(body={"choices": [{"message": {"content": "hi"}}]}), "content is not a list"),
}
ALL_BAD = {**JSON_LEVEL, **ANTHROPIC_SHAPE}


@pytest.mark.parametrize(("reply", "reason"), ALL_BAD.values(), ids=ALL_BAD.keys())
def test_a_reply_that_cannot_be_used_is_a_permanent_invalid_response_keeping_its_bytes(server, settings, reply, reason):
    settings.KEEL_MODEL_REPLY_MAX_BYTES = REPLY_LIMIT
    server.script = [reply, anthropic_message()]

    with pytest.raises(ProviderError, match="^invalid_response: ") as raised:
        call_model(request_for(server))

    assert reason in str(raised.value)
    assert raised.value.transient is False
    assert [(a["status"], a["error"]) for a in raised.value.attempts] == [(200, str(raised.value))]
    assert len(server.requests) == 1  # the model answered: it is not asked again
    kept = base64.b64decode(raised.value.received["body_base64"])
    body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
    assert kept and body.startswith(kept)


def test_an_unusable_reply_echoing_the_key_is_kept_scrubbed(server):
    server.script = [Reply(body=f'{{"type": "message", "content": "{KEY}"}}'.encode(), content_type="application/json")]

    with pytest.raises(ProviderError, match="content is not a list") as raised:
        call_model(request_for(server))

    received = raised.value.received
    assert received["scrubbed"] is True
    assert base64.b64decode(received["body_base64"]) == b'{"type": "message", "content": "[redacted]"}'
    assert_key_nowhere(received, raised.value.attempts, str(raised.value))

"""The azure_openai provider against a loopback server that speaks Azure OpenAI's deployment API."""

import base64
import json

import pytest

from pipelines.providers import ModelRequest, ProviderError, call_model, exchange
from tests import factories
from tests.pipelines.bad_replies import BAD_REPLIES, REPLY_LIMIT
from tests.pipelines.chat_server import Reply
from tests.pipelines.provider_servers import AzureServer, azure_completion, azure_error

KEY = "azure-test-key-0123456789abcdef"
DEPLOYMENT = "gpt-4o-mini-prod"
MESSAGES = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Classify: my parcel is late."})
THROTTLED = (
    "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have "
    "exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 2 seconds."
)
WORKSPACE: dict[str, int] = {}


@pytest.fixture
def server():
    with AzureServer(KEY, DEPLOYMENT) as server:
        yield server


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(exchange, "BACKOFF_BASE_SECONDS", 0.01)


@pytest.fixture(autouse=True)
def api_key(monkeypatch, db):
    monkeypatch.setenv("TEST_AZURE_KEY", KEY)
    workspace = factories.WorkspaceFactory()
    factories.CredentialFactory(workspace=workspace, slug="azure", env_name="TEST_AZURE_KEY")
    WORKSPACE["id"] = workspace.pk


def request_for(server: AzureServer, **fields) -> ModelRequest:
    defaults = {
        "provider": "azure_openai",
        "model_name": "gpt-4o-mini",
        "model_version": "2024-07-18",
        "messages": MESSAGES,
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 64,
        "seed": 1234,
        "timeout_seconds": 5,
        "base_url": server.base_url + "/",
        "credential": "azure",
        "workspace_id": WORKSPACE["id"],
        "price_input_per_1k": 0.15,
        "price_output_per_1k": 0.6,
        "deployment": DEPLOYMENT,
        "api_version": "2024-10-21",
    }
    return ModelRequest(**{**defaults, **fields})


def assert_key_nowhere(*recorded) -> None:
    assert KEY not in json.dumps(recorded, default=str)


def test_it_returns_the_completion_with_tokens_and_cost(server):
    server.script = [azure_completion("label: shipping\nconfidence: 0.91", prompt_tokens=1000, completion_tokens=500)]

    response = call_model(request_for(server))

    assert response.text == "label: shipping\nconfidence: 0.91"
    assert (response.input_tokens, response.output_tokens) == (1000, 500)
    assert response.cost == pytest.approx(0.15 + 0.3)
    assert response.response_body["prompt_filter_results"][0]["prompt_index"] == 0
    assert response.attempts[0]["headers"] == {"apim-request-id": "3f2c-test"}


def test_it_posts_to_the_deployment_with_the_api_version_and_the_key_only_in_its_header(server):
    server.script = [azure_completion()]

    response = call_model(request_for(server, extra_params={"stop": ["\n\n"]}))

    [received] = server.requests
    assert received["path"] == f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version=2024-10-21"
    assert received["headers"]["api-key"] == KEY
    assert "authorization" not in received["headers"]
    # The deployment chooses the model: the body names none.
    assert received["body"] == {
        "messages": [dict(message) for message in MESSAGES],
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 64,
        "seed": 1234,
        "stop": ["\n\n"],
    }
    assert response.request_body == received["body"]
    assert_key_nowhere(response.request_body, response.response_body, response.attempts)


def test_a_429_waits_the_milliseconds_asked_and_keeps_the_rate_limit_headers(server, monkeypatch):
    waits = []
    monkeypatch.setattr(exchange.time, "sleep", waits.append)
    limits = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-remaining-tokens": "120"}
    throttled = azure_error(429, "429", THROTTLED, headers={"retry-after-ms": "1500", "retry-after": "2", **limits})
    server.script = [throttled, azure_completion()]

    response = call_model(request_for(server))

    assert waits == [1.5]  # retry-after-ms is the finer of the two
    first, second = response.attempts
    assert first["status"] == 429 and first["error"].startswith("HTTP 429: 429: Requests to the ChatCompletions")
    assert first["headers"] == {"retry-after-ms": "1500", "retry-after": "2", **limits}
    assert second["status"] == 200


def test_retry_after_in_seconds_is_honoured_without_the_milliseconds(server, monkeypatch):
    waits = []
    monkeypatch.setattr(exchange.time, "sleep", waits.append)
    server.script = [azure_error(429, "429", THROTTLED, headers={"retry-after": "2"}), azure_completion()]

    call_model(request_for(server))

    assert waits == [2.0]


def test_it_gives_up_after_three_throttles_as_transient(server):
    server.script = [azure_error(429, "429", THROTTLED, headers={"retry-after-ms": "1"})] * 3

    with pytest.raises(ProviderError, match="gave up after 3 attempts") as raised:
        call_model(request_for(server))

    assert raised.value.transient is True
    assert [a["status"] for a in raised.value.attempts] == [429, 429, 429]


def test_a_content_filter_refusal_is_permanent_and_named(server):
    server.script = [
        azure_error(400, "content_filter", "The response was filtered due to the prompt triggering Azure's policy."),
        azure_completion(),
    ]

    with pytest.raises(ProviderError, match="HTTP 400: content_filter: The response was filtered") as raised:
        call_model(request_for(server))

    assert raised.value.transient is False
    assert len(server.requests) == 1


def test_an_answer_withheld_by_the_content_filter_is_an_invalid_response(server):
    reply = azure_completion()
    reply.body["choices"][0] = {"index": 0, "finish_reason": "content_filter", "message": {"role": "assistant"}}
    server.script = [reply]

    with pytest.raises(ProviderError, match="invalid_response: the provider's content filter withheld") as raised:
        call_model(request_for(server))

    assert raised.value.transient is False
    assert raised.value.received["status"] == 200


def test_a_wrong_deployment_is_a_permanent_404(server):
    with pytest.raises(ProviderError, match="HTTP 404: DeploymentNotFound") as raised:
        call_model(request_for(server, deployment="nope"))

    assert raised.value.transient is False


@pytest.mark.parametrize("missing", ["deployment", "api_version"])
def test_a_request_without_a_deployment_or_an_api_version_sends_nothing(server, missing):
    with pytest.raises(ProviderError, match=f"has no {missing}"):
        call_model(request_for(server, **{missing: ""}))

    assert server.requests == []


def test_a_server_echoing_the_key_does_not_get_it_into_the_error(server):
    server.script = [azure_error(401, "401", f"Access denied for key {KEY}.")]

    with pytest.raises(ProviderError) as raised:
        call_model(request_for(server))

    assert_key_nowhere(str(raised.value), raised.value.attempts)


def test_a_model_config_without_a_credential_sends_nothing(server):
    with pytest.raises(ProviderError, match="needs a credential"):
        call_model(request_for(server, credential=""))

    assert server.requests == []


# Azure answers in OpenAI's shape: every bad reply of the openai provider applies as it is.
@pytest.mark.parametrize(("reply", "reason"), BAD_REPLIES.values(), ids=BAD_REPLIES.keys())
def test_a_reply_that_cannot_be_used_is_a_permanent_invalid_response_keeping_its_bytes(server, settings, reply, reason):
    settings.KEEL_MODEL_REPLY_MAX_BYTES = REPLY_LIMIT
    server.script = [reply, azure_completion()]

    with pytest.raises(ProviderError, match="^invalid_response: ") as raised:
        call_model(request_for(server))

    assert reason in str(raised.value)
    assert raised.value.transient is False
    assert [(a["status"], a["error"]) for a in raised.value.attempts] == [(200, str(raised.value))]
    assert len(server.requests) == 1
    kept = base64.b64decode(raised.value.received["body_base64"])
    assert kept and reply.body.startswith(kept)


def test_an_unusable_reply_echoing_the_key_is_kept_scrubbed(server):
    server.script = [Reply(body=f"<html>bad gateway for {KEY}</html>".encode(), content_type="application/json")]

    with pytest.raises(ProviderError, match="not usable JSON") as raised:
        call_model(request_for(server))

    assert base64.b64decode(raised.value.received["body_base64"]) == b"<html>bad gateway for [redacted]</html>"
    assert_key_nowhere(raised.value.received, raised.value.attempts, str(raised.value))

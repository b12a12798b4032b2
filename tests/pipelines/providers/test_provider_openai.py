import base64
import json

import pytest

from pipelines.providers import ModelRequest, ProviderError, call_model
from pipelines.providers import openai as provider
from tests import factories
from tests.pipelines.bad_replies import BAD_REPLIES, REPLY_LIMIT
from tests.pipelines.chat_server import ChatServer, Reply, completion

KEY = "sk-test-0123456789abcdef"
MESSAGES = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Classify: my parcel is late."})


@pytest.fixture
def server():
    with ChatServer() as server:
        yield server


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(provider, "BACKOFF_BASE_SECONDS", 0.01)


# The workspace the calls are made for: it allows 127.0.0.1 and holds the "openai" credential.
WORKSPACE: dict[str, int] = {}


@pytest.fixture(autouse=True)
def api_key(monkeypatch, db):
    monkeypatch.setenv("TEST_OPENAI_KEY", KEY)
    workspace = factories.WorkspaceFactory()
    factories.CredentialFactory(workspace=workspace, slug="openai", env_name="TEST_OPENAI_KEY")
    WORKSPACE["id"] = workspace.pk


def request_for(server: ChatServer, **fields) -> ModelRequest:
    defaults = {
        "provider": "openai",
        "model_name": "gpt-4o-mini",
        "model_version": "2024-07-18",
        "messages": MESSAGES,
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 64,
        "seed": 1234,
        "timeout_seconds": 5,
        "base_url": server.base_url + "/",  # a trailing slash, as people paste it
        "credential": "openai",
        "workspace_id": WORKSPACE["id"],
        "price_input_per_1k": 0.15,
        "price_output_per_1k": 0.6,
    }
    return ModelRequest(**{**defaults, **fields})


def assert_key_nowhere(*recorded) -> None:
    assert KEY not in json.dumps(recorded, default=str)


def test_it_returns_the_completion_with_tokens_and_cost(server):
    server.script = [completion("label: shipping\nconfidence: 0.91", prompt_tokens=1000, completion_tokens=500)]

    response = call_model(request_for(server, extra_params={"response_format": {"type": "text"}}))

    assert response.text == "label: shipping\nconfidence: 0.91"
    assert (response.input_tokens, response.output_tokens) == (1000, 500)
    assert response.cost == pytest.approx(0.15 + 0.3)
    assert response.response_body["id"] == "chatcmpl-test"
    assert [a["status"] for a in response.attempts] == [200]
    assert response.attempts[0]["error"] is None


def test_it_sends_exactly_the_recorded_body_with_the_key_only_in_the_header(server):
    server.script = [completion()]

    response = call_model(request_for(server, extra_params={"stop": ["\n\n"]}))

    [received] = server.requests
    assert received["path"] == "/v1/chat/completions"
    assert received["headers"]["authorization"] == f"Bearer {KEY}"
    assert received["headers"]["content-type"] == "application/json"
    assert received["body"] == {
        "model": "gpt-4o-mini",
        "messages": [dict(message) for message in MESSAGES],
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 64,
        "seed": 1234,
        "stop": ["\n\n"],
    }
    assert response.request_body == received["body"]
    assert_key_nowhere(response.request_body, response.response_body, response.attempts, received["body"])


def test_without_a_key_variable_it_sends_no_authorization(server):
    server.script = [completion()]

    call_model(request_for(server, credential=""))

    assert "authorization" not in server.requests[0]["headers"]


def test_it_retries_a_429_and_honours_retry_after(server):
    server.script = [Reply(status=429, body=b"slow down", headers={"Retry-After": "0"}), completion()]

    response = call_model(request_for(server))

    assert response.text == "label: refund\nconfidence: 0.80"
    assert [(a["status"], a["error"]) for a in response.attempts] == [(429, "HTTP 429"), (200, None)]
    assert len(server.requests) == 2


def test_it_retries_a_server_error(server):
    server.script = [Reply(status=500, body=b"internal error"), completion()]

    response = call_model(request_for(server))

    assert [a["status"] for a in response.attempts] == [500, 200]


def test_it_gives_up_after_three_server_errors_as_transient(server):
    server.script = [Reply(status=503), Reply(status=502), Reply(status=500)]

    with pytest.raises(ProviderError, match="gave up after 3 attempts") as raised:
        call_model(request_for(server))

    assert raised.value.transient is True
    assert [a["status"] for a in raised.value.attempts] == [503, 502, 500]


def test_a_timeout_is_transient_and_every_attempt_is_recorded(server):
    server.script = [Reply(delay=30) for _ in range(3)]

    with pytest.raises(ProviderError, match="timed out") as raised:
        call_model(request_for(server, timeout_seconds=0.3))

    assert raised.value.transient is True
    assert len(raised.value.attempts) == 3
    assert all(a["status"] is None and "timed out" in a["error"] for a in raised.value.attempts)
    assert len(server.requests) == 3


def test_a_refused_connection_is_transient():
    with ChatServer() as gone:
        pass  # nobody listens on its port any more

    with pytest.raises(ProviderError, match="connection failed") as raised:
        call_model(request_for(gone))

    assert raised.value.transient is True
    assert len(raised.value.attempts) == 3


def test_a_client_error_is_permanent_and_not_retried(server):
    server.script = [Reply(status=400, body={"error": {"message": "max_tokens is too large"}}), completion()]

    with pytest.raises(ProviderError, match="HTTP 400.*max_tokens is too large") as raised:
        call_model(request_for(server))

    assert raised.value.transient is False
    assert [a["status"] for a in raised.value.attempts] == [400]
    assert len(server.requests) == 1


def test_a_server_echoing_the_key_does_not_get_it_into_the_error(server):
    server.script = [Reply(status=401, body={"error": {"message": f"Incorrect API key provided: {KEY}"}})]

    with pytest.raises(ProviderError) as raised:
        call_model(request_for(server))

    assert_key_nowhere(str(raised.value), raised.value.attempts)


@pytest.mark.parametrize(("reply", "reason"), BAD_REPLIES.values(), ids=BAD_REPLIES.keys())
def test_a_reply_that_cannot_be_used_is_a_permanent_invalid_response_keeping_its_bytes(server, settings, reply, reason):
    settings.KEEL_MODEL_REPLY_MAX_BYTES = REPLY_LIMIT
    server.script = [reply, completion()]

    with pytest.raises(ProviderError, match="^invalid_response: ") as raised:
        call_model(request_for(server))

    assert reason in str(raised.value)
    assert raised.value.transient is False
    assert [(a["status"], a["error"]) for a in raised.value.attempts] == [(200, str(raised.value))]
    assert len(server.requests) == 1  # the model answered: it is not asked again
    received = raised.value.received
    kept = base64.b64decode(received["body_base64"])
    assert received["status"] == 200 and received["size"] == len(kept)
    assert reply.body.startswith(kept) and (len(kept) == len(reply.body) or reason.startswith(("larger", "broke")))
    json.dumps(received, ensure_ascii=False).encode()  # storable as it is: plain ASCII and numbers


def test_a_reply_without_usage_counts_no_tokens_and_says_so(server):
    server.script = [Reply(body={"choices": [{"message": {"role": "assistant", "content": "hi"}}]})]

    response = call_model(request_for(server))

    assert (response.text, response.input_tokens, response.output_tokens, response.cost) == ("hi", 0, 0, 0.0)
    assert "no usage" in response.attempts[0]["note"]


def test_a_missing_key_variable_is_permanent_and_named(server, monkeypatch):
    monkeypatch.delenv("TEST_OPENAI_KEY")

    with pytest.raises(ProviderError, match="TEST_OPENAI_KEY") as raised:
        call_model(request_for(server))

    assert raised.value.transient is False
    assert server.requests == []


def test_extra_params_may_not_replace_what_the_release_fixes(server):
    with pytest.raises(ProviderError, match="model, seed") as raised:
        call_model(request_for(server, extra_params={"seed": 1, "model": "gpt-4o", "user": "x"}))

    assert raised.value.transient is False
    assert server.requests == []

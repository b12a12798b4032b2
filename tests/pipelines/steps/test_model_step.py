import pytest

from pipelines.providers import ProviderError
from pipelines.steps.base import StepError
from pipelines.steps.model import execute

from .helpers import fixed_model, make_ctx

# As a release snapshot holds a ModelConfig: Decimals as strings.
MODEL = {
    "id": 3,
    "slug": "gpt",
    "provider": "openai",
    "model_name": "gpt-test",
    "model_version": "2024-05",
    "base_url": "https://llm.example.com/v1",
    "temperature": "0.70",
    "top_p": "0.90",
    "max_tokens": 64,
    "seed": None,
    "timeout_seconds": 20,
    "extra_params": {"stop": ["\n\n"]},
    "price_input_per_1k": "0.500000",
    "price_output_per_1k": "1.500000",
    "credential": "openai-key",
}
PROMPT = {
    "slug": "greet",
    "body": "Hello {{ name }}, pick one of {{ labels | join('/') }}.",
    "variables": ["name", "labels"],
}


def model_ctx(*, config=None, model=MODEL, prompt=PROMPT, call_model=None, seed=1234):
    step = {
        "kind": "model",
        "name": "call",
        "config": {"variables": {"labels": ["a", "b"]}} if config is None else config,
        "prompt": prompt,
        "model": model,
    }
    return make_ctx(step=step, seed=seed, call_model=call_model or fixed_model("an answer"))


def test_it_renders_the_prompt_calls_the_model_and_keeps_its_text():
    calls = []
    document = {"name": "Ann", "other": 1}
    result = execute(document, model_ctx(call_model=fixed_model("Hi Ann", calls=calls)))
    assert result.output == {"name": "Ann", "other": 1, "output": "Hi Ann"}
    assert document == {"name": "Ann", "other": 1}
    (request,) = calls
    assert request.messages == ({"role": "user", "content": "Hello Ann, pick one of a/b."},)
    assert (request.provider, request.model_name, request.model_version) == ("openai", "gpt-test", "2024-05")
    assert (request.temperature, request.top_p, request.max_tokens, request.timeout_seconds) == (0.7, 0.9, 64, 20.0)
    assert (request.price_input_per_1k, request.price_output_per_1k) == (0.5, 1.5)
    assert request.base_url == "https://llm.example.com/v1" and request.extra_params == {"stop": ["\n\n"]}
    assert (request.credential, request.api_key_env) == ("openai-key", "")
    assert request.seed == 1234


def test_the_model_configs_own_seed_wins_over_the_runs():
    calls = []
    execute({"name": "Ann"}, model_ctx(model={**MODEL, "seed": 7}, call_model=fixed_model("x", calls=calls)))
    assert calls[0].seed == 7


def test_it_records_the_call_and_reports_tokens_and_cost():
    result = execute({"name": "Ann"}, model_ctx(call_model=fixed_model("Hi")))
    (recording,) = result.recordings
    assert recording["request"]["messages"] == [{"role": "user", "content": "Hello Ann, pick one of a/b."}]
    assert (recording["request"]["credential"], recording["request"]["api_key_env"]) == ("openai-key", "")
    assert "workspace_id" not in recording["request"]
    assert recording["request_body"] == {"model": "gpt-test", "messages": [recording["request"]["messages"][0]]}
    assert recording["response_body"] == {"choices": [{"message": {"content": "Hi"}}]}
    assert recording["attempts"] == [{"status": 200, "error": "", "elapsed_ms": 3}]
    assert (result.input_tokens, result.output_tokens, result.cost) == (10, 5, 0.25)


def test_a_release_cut_before_credentials_records_its_request_as_it_always_did():
    # Its snapshot names the key's variable; recordings made then have no credential key,
    # so a replay of such a run compares the same request.
    legacy = {k: v for k, v in MODEL.items() if k != "credential"} | {"api_key_env": "OPENAI_API_KEY"}
    calls = []
    result = execute({"name": "Ann"}, model_ctx(model=legacy, call_model=fixed_model("Hi", calls=calls)))
    (recording,) = result.recordings
    assert recording["request"]["api_key_env"] == "OPENAI_API_KEY" and "credential" not in recording["request"]
    assert (calls[0].api_key_env, calls[0].credential) == ("OPENAI_API_KEY", "")


def test_it_writes_to_the_configured_output_field_even_nested():
    ctx = model_ctx(config={"output_field": "drafts.first", "variables": {"labels": []}})
    assert execute({"name": "A"}, ctx).output["drafts"] == {"first": "an answer"}


def test_the_documents_fields_win_over_constant_variables():
    calls = []
    execute({"name": "Ann", "labels": ["x"]}, model_ctx(call_model=fixed_model("y", calls=calls)))
    assert calls[0].messages[0]["content"] == "Hello Ann, pick one of x."


def test_undeclared_fields_are_not_passed_to_the_prompt():
    prompt = {"slug": "leak", "body": "{{ secret }}", "variables": []}
    with pytest.raises(StepError, match=r"prompt 'leak' failed to render: UndefinedError: 'secret' is undefined"):
        execute({"secret": "s3cret"}, model_ctx(prompt=prompt))


def test_a_missing_variable_fails_naming_it():
    with pytest.raises(StepError, match=r"prompt 'greet' needs variables missing from the document: name$"):
        execute({"nom": "Ann"}, model_ctx())


def test_a_transient_provider_error_is_a_transient_step_error():
    def timeout(request):
        raise ProviderError("timed out after 20 s", transient=True)

    with pytest.raises(StepError, match="model call failed: timed out after 20 s") as error:
        execute({"name": "Ann"}, model_ctx(call_model=timeout))
    assert error.value.transient


def test_a_permanent_provider_error_is_a_permanent_step_error():
    def refused(request):
        raise ProviderError("401 Unauthorized", transient=False)

    with pytest.raises(StepError, match="model call failed: 401 Unauthorized") as error:
        execute({"name": "Ann"}, model_ctx(call_model=refused))
    assert not error.value.transient


def test_a_step_without_a_model_config_fails():
    with pytest.raises(StepError, match="a model step needs both a prompt and a model config"):
        execute({"name": "Ann"}, model_ctx(model=None))


def test_an_output_field_through_text_fails_naming_it():
    ctx = model_ctx(config={"output_field": "name.first", "variables": {"labels": []}})
    with pytest.raises(StepError, match=r"cannot write the model's output to 'name.first': 'name' is not an object"):
        execute({"name": "Ann"}, ctx)

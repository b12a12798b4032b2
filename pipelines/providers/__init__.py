"""Model providers: one call in, one recorded response out.

A provider turns a ``ModelRequest`` (everything a release fixes about the call,
plus the rendered prompt and the run's seed) into a ``ModelResponse`` that
carries, besides the text, exactly what was sent and received, so a run can be
replayed from its recordings without calling the model again. Each provider
module imports only ``base`` (and ``exchange``), so this registry imports them all.
"""

from config.observability.instruments import model_call_observed
from pipelines.providers import anthropic, azure_openai, builtin, openai
from pipelines.providers.base import ModelRequest, ModelResponse, ProviderError, cost_of

__all__ = ["ModelRequest", "ModelResponse", "ProviderError", "call_model", "cost_of", "recorded_response"]

# provider name -> the function that makes one call
PROVIDERS = {
    "builtin": builtin.complete,
    "openai": openai.complete,
    "anthropic": anthropic.complete,
    "azure_openai": azure_openai.complete,
}


def recorded_response(request: ModelRequest, recording: dict) -> ModelResponse:
    """A recorded answer as a ModelResponse, read as its provider reads a live
    one: Anthropic's ``message``, else the chat.completion that the builtin,
    openai and azure_openai providers record."""
    body = recording["response_body"]
    if request.provider == "anthropic":
        text, input_tokens, output_tokens = anthropic.reply_read(body)
    else:
        usage = body.get("usage") or {}
        input_tokens, output_tokens = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        text = body["choices"][0]["message"]["content"]
    return ModelResponse(
        text=text,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=cost_of(request, input_tokens, output_tokens),
        request_body=recording.get("request_body") or {},
        response_body=body,
        attempts=tuple(recording.get("attempts") or ()),
    )


def call_model(request: ModelRequest) -> ModelResponse:
    """Dispatch to the provider the request names, measured (latency, tokens,
    cost and a span: config/observability/instruments.py)."""
    with model_call_observed(provider=request.provider, model=request.model_name) as call:
        response = _dispatch(request)
        call.record(input_tokens=response.input_tokens, output_tokens=response.output_tokens, cost=response.cost)
    return response


def _dispatch(request: ModelRequest) -> ModelResponse:
    complete = PROVIDERS.get(request.provider)
    if complete is None:
        raise ProviderError(f"Unknown provider {request.provider!r}.", transient=False)
    return complete(request)

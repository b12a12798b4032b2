"""OpenAI-compatible chat completions over HTTP (OpenAI, gateways, Ollama,
llama.cpp, vLLM: anything serving ``POST {base_url}/chat/completions``).

The key (when the model config names a credential) goes in the
``Authorization: Bearer`` header only. Sending, retrying, the egress check
and scrubbing the key are the rules every remote provider shares
(``pipelines.providers.exchange``); this module writes the body and reads
the ``chat.completion`` reply, whose shape Azure OpenAI shares
(``chat_completion_read``).
"""

from pipelines.providers.base import ModelRequest, ModelResponse, ProviderError, cost_of
from pipelines.providers.exchange import (
    Exchange,
    api_key,
    error_text,
    fixed_fields_check,
    is_count,
    key_scrubbed,
    post_json,
)

# Request fields the release fixes; extra_params may add to them, never replace them.
FIXED_FIELDS = ("model", "messages", "temperature", "top_p", "max_tokens", "seed")


def complete(request: ModelRequest) -> ModelResponse:
    """Send the request; whatever comes back is scrubbed of the key."""
    key = api_key(request)
    return key_scrubbed(key, lambda: _complete(request, key))


def _complete(request: ModelRequest, key: str) -> ModelResponse:
    if not request.base_url:
        raise ProviderError("The model config has no base_url.", transient=False)
    fixed_fields_check(request.extra_params, FIXED_FIELDS)
    body = {
        "model": request.model_name,
        "messages": [dict(message) for message in request.messages],
        "temperature": float(request.temperature),
        "top_p": float(request.top_p),
        "max_tokens": request.max_tokens,
        "seed": request.seed,
        **request.extra_params,
    }
    url = request.base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    exchange = post_json(request, url=url, body=body, headers=headers, key=key, describe=_describe)
    return chat_completion_read(request, exchange)


def _describe(status: int, raw: bytes) -> str:
    # A refusal says why in its body; a 429 or 5xx is retried, and its status says enough.
    return "" if status == 429 or status >= 500 else error_text(raw)


def chat_completion_read(request: ModelRequest, exchange: Exchange) -> ModelResponse:
    """The text and token counts of a ``chat.completion`` reply, else ``invalid_response``."""
    received = exchange.json()
    choices = received.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise exchange.invalid("no choices")
    message = choices[0].get("message")
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str):
        if choices[0].get("finish_reason") == "content_filter":
            raise exchange.invalid("the provider's content filter withheld the answer (finish_reason content_filter)")
        raise exchange.invalid("choices[0].message.content is not a string")

    usage = received.get("usage")
    if usage is None:
        # Some local servers leave usage out; the tokens count as 0 and the attempt says why.
        exchange.attempts[-1]["note"] = "no usage in the reply: tokens counted as 0"
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
    if not isinstance(usage, dict):
        raise exchange.invalid("usage is not an object")
    input_tokens, output_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not (is_count(input_tokens) and is_count(output_tokens)):
        raise exchange.invalid("usage.prompt_tokens and usage.completion_tokens must be counts up to 2147483647")

    return ModelResponse(
        text=text,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=cost_of(request, input_tokens, output_tokens),
        request_body=exchange.body,
        response_body=received,
        attempts=tuple(exchange.attempts),
    )

"""Anthropic's Messages API: ``POST {base_url}/v1/messages``.

The key goes in the ``x-api-key`` header only, with ``anthropic-version`` (the
model config's ``api_version``, else ``DEFAULT_VERSION``). Sending, retrying
(429, 5xx and Anthropic's 529 ``overloaded_error`` are transient, waiting the
``retry-after`` it sends), the egress check, the ``anthropic-ratelimit-*``
headers kept on each attempt and the key's scrubbing are the rules every
remote provider shares (``pipelines.providers.exchange``).

The body, as recorded: ``model``, ``max_tokens`` (which the API requires),
``messages`` (user and assistant turns), ``system`` (the system messages
joined, when there are any), ``temperature``, ``top_p`` only when below 1
(newer Claude models refuse both at once, and 1 changes nothing) and the
model config's ``extra_params``. The Messages API takes no seed: a run is
reproduced by replaying its recordings. An error reply,
``{"type": "error", "error": {"type": "overloaded_error", "message": ...}}``,
is named by its type and message.

Tokens: input counts the prompt's tokens and the prompt cache's (written and
read), all at the input price; the cost is an upper bound when a cache is used.
"""

import json

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

DEFAULT_VERSION = "2023-06-01"
FIXED_FIELDS = ("model", "messages", "system", "max_tokens", "temperature", "top_p")
# Token counts in ``usage`` that are priced as input.
INPUT_USAGE = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def complete(request: ModelRequest) -> ModelResponse:
    """Send the request; whatever comes back is scrubbed of the key."""
    key = api_key(request, required=True)
    return key_scrubbed(key, lambda: _complete(request, key))


def _complete(request: ModelRequest, key: str) -> ModelResponse:
    if not request.base_url:
        raise ProviderError("The model config has no base_url (https://api.anthropic.com).", transient=False)
    if request.max_tokens < 1:
        raise ProviderError("max_tokens: the Messages API needs a number of tokens of at least 1.", transient=False)
    fixed_fields_check(request.extra_params, FIXED_FIELDS)
    url = request.base_url.rstrip("/") + "/v1/messages"
    headers = {"x-api-key": key, "anthropic-version": request.api_version or DEFAULT_VERSION}
    exchange = post_json(request, url=url, body=body_for(request), headers=headers, key=key, describe=_describe)
    return _read(request, exchange)


def body_for(request: ModelRequest) -> dict:
    """The Messages API body for a request (before ``extra_params``' additions)."""
    system = [message["content"] for message in request.messages if message.get("role") == "system"]
    body = {
        "model": request.model_name,
        "max_tokens": request.max_tokens,
        "messages": [dict(message) for message in request.messages if message.get("role") != "system"],
    }
    if system:
        body["system"] = "\n\n".join(system)
    body["temperature"] = float(request.temperature)
    if float(request.top_p) < 1:
        body["top_p"] = float(request.top_p)
    return {**body, **request.extra_params}


def _describe(status: int, raw: bytes) -> str:
    """``overloaded_error: Overloaded`` from Anthropic's error body, else its start as text."""
    error = _error_of(raw)
    if error is not None:
        return f"{error.get('type', 'error')}: {str(error.get('message', ''))[:300]}"
    return error_text(raw)


def _error_of(raw: bytes) -> dict | None:
    try:
        received = json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both
        return None
    error = received.get("error") if isinstance(received, dict) else None
    return error if isinstance(error, dict) else None


def _read(request: ModelRequest, exchange: Exchange) -> ModelResponse:
    """The text and token counts of a ``message`` reply, else ``invalid_response``."""
    received = exchange.json()
    try:
        text, input_tokens, output_tokens = reply_read(received)
    except ValueError as error:
        raise exchange.invalid(str(error)) from None
    if received.get("stop_reason") == "max_tokens":
        exchange.attempts[-1]["note"] = "the answer stopped at max_tokens"
    return ModelResponse(
        text=text,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=cost_of(request, input_tokens, output_tokens),
        request_body=exchange.body,
        response_body=received,
        attempts=tuple(exchange.attempts),
    )


def reply_read(received: dict) -> tuple[str, int, int]:
    """(text, input tokens, output tokens) of a ``message`` reply (live, or as
    recorded for replay); a ValueError saying what the reply lacks."""
    if received.get("type") == "error":
        error = received.get("error") if isinstance(received.get("error"), dict) else {}
        raise ValueError(f"the reply is an error: {error.get('type', 'error')}: {error.get('message', '')}")
    content = received.get("content")
    if not isinstance(content, list) or not all(isinstance(block, dict) for block in content):
        raise ValueError("content is not a list of blocks")
    texts = [block.get("text") for block in content if block.get("type") == "text"]
    if not texts or not all(isinstance(text, str) for text in texts):
        raise ValueError(f"content holds no text block (stop_reason {received.get('stop_reason')!r})")
    usage = received.get("usage")
    if not isinstance(usage, dict):
        raise ValueError("usage is not an object")
    # The cache's counts may be missing or null (no cache used): they count as 0.
    counts = [usage.get(name) if name == "input_tokens" else usage.get(name) or 0 for name in INPUT_USAGE]
    output_tokens = usage.get("output_tokens")
    if not (all(is_count(count) for count in counts) and is_count(output_tokens)):
        raise ValueError("usage.input_tokens and usage.output_tokens must be counts up to 2147483647")
    if not is_count(sum(counts)):
        raise ValueError("usage's input token counts add up past 2147483647")
    return "".join(texts), sum(counts), output_tokens

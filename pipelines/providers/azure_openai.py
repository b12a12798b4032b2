"""Azure OpenAI chat completions: ``POST {base_url}/openai/deployments/{deployment}/chat/completions?api-version=...``.

``base_url`` is the resource's endpoint (``https://<resource>.openai.azure.com``);
the deployment, not the body, chooses the model, so the body carries no
``model`` (the model config's ``model_name`` is kept for the record). The key
goes in the ``api-key`` header only. Sending, retrying (429 and 5xx, waiting
``retry-after-ms``, else ``retry-after``), the egress check, the
``x-ratelimit-*`` headers kept on each attempt and the key's scrubbing are the
rules every remote provider shares (``pipelines.providers.exchange``).

The reply is a ``chat.completion`` as OpenAI's (``openai.chat_completion_read``);
an answer withheld by Azure's content filter is an ``invalid_response`` that
says so. An error reply, ``{"error": {"code": "429", "message": ...}}``, is
named by its code and message.
"""

import json
from urllib.parse import quote, urlencode

from pipelines.providers.base import ModelRequest, ModelResponse, ProviderError
from pipelines.providers.exchange import api_key, error_text, fixed_fields_check, key_scrubbed, post_json
from pipelines.providers.openai import chat_completion_read

FIXED_FIELDS = ("model", "messages", "temperature", "top_p", "max_tokens", "seed")


def complete(request: ModelRequest) -> ModelResponse:
    """Send the request; whatever comes back is scrubbed of the key."""
    key = api_key(request, required=True)
    return key_scrubbed(key, lambda: _complete(request, key))


def _complete(request: ModelRequest, key: str) -> ModelResponse:
    fixed_fields_check(request.extra_params, FIXED_FIELDS)
    body = {
        "messages": [dict(message) for message in request.messages],
        "temperature": float(request.temperature),
        "top_p": float(request.top_p),
        "max_tokens": request.max_tokens,
        "seed": request.seed,
        **request.extra_params,
    }
    exchange = post_json(request, url=url_for(request), body=body, headers={"api-key": key}, key=key,
                         describe=_describe)  # fmt: skip
    return chat_completion_read(request, exchange)


def url_for(request: ModelRequest) -> str:
    """The deployment's chat-completions URL; a ProviderError naming what the model config lacks."""
    missing = [name for name in ("base_url", "deployment", "api_version") if not getattr(request, name)]
    if missing:
        raise ProviderError(f"The model config has no {' and no '.join(missing)}.", transient=False)
    deployment = quote(request.deployment, safe="")
    query = urlencode({"api-version": request.api_version})
    return f"{request.base_url.rstrip('/')}/openai/deployments/{deployment}/chat/completions?{query}"


def _describe(status: int, raw: bytes) -> str:
    """``429: Requests to the ... Please retry after 6 seconds.`` from Azure's error body."""
    try:
        received = json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both
        return error_text(raw)
    error = received.get("error") if isinstance(received, dict) else None
    if not isinstance(error, dict):
        return error_text(raw)
    return f"{error.get('code', 'error')}: {str(error.get('message', ''))[:300]}"

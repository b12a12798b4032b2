"""Model providers: one call in, one recorded response out.

A provider turns a ``ModelRequest`` (everything a release fixes about the call,
plus the rendered prompt and the run's seed) into a ``ModelResponse`` that
carries, besides the text, exactly what was sent and received, so a run can be
replayed from its recordings without calling the model again.
"""

from dataclasses import dataclass, field

from config.observability.instruments import model_call_observed


@dataclass(frozen=True)
class ModelRequest:
    provider: str  # "builtin", "openai", "anthropic" or "azure_openai"
    model_name: str
    model_version: str
    messages: tuple[dict, ...]  # chat messages: ({"role": "user", "content": "..."},)
    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    timeout_seconds: float
    base_url: str = ""
    # A release cut before credentials existed names the key's variable; the
    # workspace's credential mapped to it is used (never the variable itself).
    api_key_env: str = ""
    credential: str = ""  # the slug of the workspace's credential, never the key
    workspace_id: int | None = None  # whose credentials and allowed hosts the call uses
    extra_params: dict = field(default_factory=dict)
    price_input_per_1k: float = 0.0
    price_output_per_1k: float = 0.0
    # Azure OpenAI: the deployment the URL names; its api-version (Anthropic: its
    # anthropic-version header, when not the default). Empty for the others.
    deployment: str = ""
    api_version: str = ""


@dataclass(frozen=True)
class ModelResponse:
    text: str
    input_tokens: int
    output_tokens: int
    cost: float  # in the model config's currency, from its prices per 1,000 tokens
    request_body: dict  # the body exactly as sent (no key)
    response_body: dict  # the body exactly as received (parsed JSON)
    attempts: tuple[dict, ...] = ()  # one per attempt: {"status", "error", "elapsed_ms"}


class ProviderError(Exception):
    """A call that failed. ``transient`` errors (timeouts, 429, 5xx after the
    provider's own retries) may succeed on a later try of the step; permanent
    ones (4xx, a reply that is not chat-completions JSON, a missing key) not.
    A reply that arrived but cannot be used is ``invalid_response`` (its
    message starts so) and keeps the bytes received in ``received``: the
    model was reached, and asking again would pay again."""

    def __init__(self, message: str, *, transient: bool, attempts: tuple[dict, ...] = (), received: dict | None = None):
        super().__init__(message)
        self.transient = transient
        self.attempts = attempts
        # A reply that could not be used, as received: {"status", "content_type", "size", "body_base64"}.
        self.received = received


def cost_of(request: ModelRequest, input_tokens: int, output_tokens: int) -> float:
    """What a call cost, from the model config's prices per 1,000 tokens."""
    spent = input_tokens * float(request.price_input_per_1k) + output_tokens * float(request.price_output_per_1k)
    return spent / 1000


def recorded_response(request: ModelRequest, recording: dict) -> ModelResponse:
    """A recorded answer as a ModelResponse, read as its provider reads a live
    one: Anthropic's ``message``, else the chat.completion that the builtin,
    openai and azure_openai providers record."""
    body = recording["response_body"]
    if request.provider == "anthropic":
        from pipelines.providers import anthropic

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
    if request.provider == "builtin":
        from pipelines.providers import builtin

        return builtin.complete(request)
    if request.provider == "openai":
        from pipelines.providers import openai

        return openai.complete(request)
    if request.provider == "anthropic":
        from pipelines.providers import anthropic

        return anthropic.complete(request)
    if request.provider == "azure_openai":
        from pipelines.providers import azure_openai

        return azure_openai.complete(request)
    raise ProviderError(f"Unknown provider {request.provider!r}.", transient=False)

"""What every provider shares: the request a release fixes, the recorded
response, the error a failed call raises, and the price of a call."""

from dataclasses import dataclass, field


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

"""OpenAI-compatible chat completions over HTTP (OpenAI, Azure-style gateways,
Ollama, llama.cpp, vLLM: anything serving ``POST {base_url}/chat/completions``).

The key is the workspace credential the model config names, read at call time;
it never leaves this module except in the Authorization header, and is scrubbed
from the recorded reply, the attempts, the error messages and the logs. The
request goes only to an address the workspace's egress policy allows.
Transient failures (429, 5xx, timeouts, connection errors) are retried a few
times with exponential backoff inside one call; what still fails is a
transient ``ProviderError`` that the step's own retry may try again later.
"""

import dataclasses
import json
import logging
import time

import httpx

from governance.credential_sources import CredentialError, scrub
from governance.credentials import credential_value
from governance.egress import EgressError
from pipelines.http import post_to, shared_client, workspace_target
from pipelines.providers import ModelRequest, ModelResponse, ProviderError, cost_of

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
# Waits between attempts: BACKOFF_BASE_SECONDS × 2^(attempt - 1), at most BACKOFF_CAP_SECONDS.
# No jitter: with three attempts per call the herd is small, and tests stay predictable.
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 8.0
# A server asking for a longer pause than this gets this much: a worker should not
# sit idle for minutes inside one call when the step can be retried later.
RETRY_AFTER_CAP_SECONDS = 20.0
# Request fields the release fixes; extra_params may add to them, never replace them,
# or the recorded model config would not be what was sent.
FIXED_FIELDS = ("model", "messages", "temperature", "top_p", "max_tokens", "seed")


class _Failed(Exception):
    """One attempt that failed: worth retrying or not, with the HTTP status if there was one."""

    def __init__(self, message: str, *, status: int | None, transient: bool, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.transient = transient
        self.retry_after = retry_after


def complete(request: ModelRequest) -> ModelResponse:
    """Send the request; whatever comes back is scrubbed of the key."""
    key = _api_key(request)
    try:
        response = _complete(request, key)
    except ProviderError as error:
        raise ProviderError(scrub(str(error), [key]), transient=error.transient,
                            attempts=scrub(error.attempts, [key])) from None  # fmt: skip
    return dataclasses.replace(response, text=scrub(response.text, [key]),
                               response_body=scrub(response.response_body, [key]),
                               attempts=scrub(response.attempts, [key]))  # fmt: skip


def _complete(request: ModelRequest, key: str) -> ModelResponse:
    """Send the request, retrying transient failures.

    1. Check the URL against the workspace's egress policy and build the body.
    2. POST it to the checked address, up to ``MAX_ATTEMPTS`` times while the failure is transient.
    3. Parse the chat.completion reply; a reply of the wrong shape is permanent.
    """
    if not request.base_url:
        raise ProviderError("The model config has no base_url.", transient=False)
    body = _body(request)
    url = request.base_url.rstrip("/") + "/chat/completions"
    try:
        target = workspace_target(url, request.workspace_id)
    except EgressError as error:
        raise ProviderError(f"egress refused: {error}", transient=False) from None
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    # Serialized here rather than by httpx, and recorded as parsed back, so the
    # recording is exactly what was sent and shares nothing with the request.
    try:
        payload = json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise ProviderError(f"The request body is not valid JSON: {error}", transient=False) from None
    body = json.loads(payload)

    attempts: list[dict] = []
    # The timeout bounds each phase (connect, each read, write); the shared
    # client follows no redirects, so the key only goes to the configured host.
    client = shared_client()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        started = time.monotonic()
        try:
            reply = _post(client, target, payload, headers, key, request.timeout_seconds)
        except _Failed as failure:
            attempts.append(_attempt(failure.status, str(failure), started))
            if not failure.transient:
                raise ProviderError(str(failure), transient=False, attempts=tuple(attempts)) from None
            if attempt == MAX_ATTEMPTS:
                message = f"{failure} (gave up after {attempt} attempts)"
                raise ProviderError(message, transient=True, attempts=tuple(attempts)) from None
            delay = _delay(attempt, failure.retry_after)
            logger.warning("Model call to %s failed (%s); retrying in %.2fs", url, failure, delay)
            time.sleep(delay)
        else:
            attempts.append(_attempt(reply.status_code, None, started))
            return _parse(request, body, reply, attempts)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _api_key(request: ModelRequest) -> str:
    if not (request.credential or request.api_key_env):
        return ""  # a local server (Ollama, llama.cpp) that wants no key
    try:
        return credential_value(workspace_id=request.workspace_id, slug=request.credential,
                                env_name=request.api_key_env)  # fmt: skip
    except CredentialError as error:
        raise ProviderError(f"API key: {error}", transient=False) from None


def _body(request: ModelRequest) -> dict:
    clashes = sorted(set(request.extra_params) & set(FIXED_FIELDS))
    if clashes:
        raise ProviderError(
            f"extra_params may not override {', '.join(clashes)}: set them on the model config.", transient=False
        )
    return {
        "model": request.model_name,
        "messages": [dict(message) for message in request.messages],
        "temperature": float(request.temperature),
        "top_p": float(request.top_p),
        "max_tokens": request.max_tokens,
        "seed": request.seed,
        **request.extra_params,
    }


def _post(client: httpx.Client, target, payload: bytes, headers: dict, key: str, timeout: float) -> httpx.Response:
    """One attempt: the response if it is a success, else ``_Failed``."""
    try:
        reply = post_to(client, target, content=payload, headers=headers, timeout=timeout)
    except httpx.TimeoutException as error:
        raise _Failed(f"timed out ({type(error).__name__})", status=None, transient=True) from None
    except httpx.TransportError as error:
        message = _scrub(f"connection failed: {type(error).__name__}: {error}", key)
        raise _Failed(message, status=None, transient=True) from None
    status = reply.status_code
    if status == 429 or status >= 500:
        raise _Failed(f"HTTP {status}", status=status, transient=True, retry_after=_retry_after(reply))
    if not 200 <= status < 300:
        raise _Failed(f"HTTP {status}: {_scrub(reply.text[:300], key)}", status=status, transient=False)
    return reply


def _retry_after(reply: httpx.Response) -> float | None:
    # Only the number-of-seconds form: an HTTP date would need the server's clock to agree with ours.
    try:
        return max(0.0, float(reply.headers.get("Retry-After", "")))
    except ValueError:
        return None


def _delay(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(retry_after, RETRY_AFTER_CAP_SECONDS)
    return min(BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), BACKOFF_CAP_SECONDS)


def _attempt(status: int | None, error: str | None, started: float) -> dict:
    return {"status": status, "error": error, "elapsed_ms": round((time.monotonic() - started) * 1000, 1)}


def _scrub(text: str, key: str) -> str:
    # Servers and proxies sometimes echo what they were sent; the key must not reach a recording.
    return text.replace(key, "[redacted]") if key else text


def _parse(request: ModelRequest, body: dict, reply: httpx.Response, attempts: list[dict]) -> ModelResponse:
    def malformed(reason: str) -> ProviderError:
        attempts[-1]["error"] = f"malformed reply: {reason}"
        return ProviderError(f"malformed reply: {reason}", transient=False, attempts=tuple(attempts))

    try:
        received = reply.json()
    except ValueError:
        raise malformed(f"not JSON ({reply.headers.get('Content-Type', 'no content type')})") from None
    if not isinstance(received, dict):
        raise malformed("not a JSON object")
    choices = received.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise malformed("no choices")
    message = choices[0].get("message")
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str):
        raise malformed("choices[0].message.content is not a string")

    usage = received.get("usage")
    if usage is None:
        # Some local servers leave usage out; the tokens count as 0 and the attempt says why.
        attempts[-1]["note"] = "no usage in the reply: tokens counted as 0"
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
    if not isinstance(usage, dict):
        raise malformed("usage is not an object")
    tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not all(isinstance(count, int) and not isinstance(count, bool) and count >= 0 for count in tokens):
        raise malformed("usage.prompt_tokens and usage.completion_tokens must be counts")
    input_tokens, output_tokens = tokens

    return ModelResponse(
        text=text,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=cost_of(request, input_tokens, output_tokens),
        request_body=body,
        response_body=received,
        attempts=tuple(attempts),
    )

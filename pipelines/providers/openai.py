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

import base64
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass

import httpx
from django.conf import settings

from governance.credential_sources import CredentialError, scrub
from governance.credentials import credential_value
from governance.egress import EgressError
from pipelines.http import shared_client, stream_to, workspace_target
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
# A reply nests a few levels; token counts must fit the StepRun's integer columns.
MAX_REPLY_DEPTH = 64
MAX_TOKENS = 2**31 - 1


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
                            attempts=scrub(error.attempts, [key]),
                            received=_scrub_received(error.received, key)) from None  # fmt: skip
    return dataclasses.replace(response, text=scrub(response.text, [key]),
                               response_body=scrub(response.response_body, [key]),
                               attempts=scrub(response.attempts, [key]))  # fmt: skip


def _scrub_received(received: dict | None, key: str) -> dict | None:
    """The bytes of an unusable reply as received, but for an echoed key."""
    if not received or not key:
        return received
    raw = base64.b64decode(received["body_base64"])
    if key.encode() not in raw:
        return received
    raw = raw.replace(key.encode(), b"[redacted]")
    return {**received, "size": len(raw), "body_base64": base64.b64encode(raw).decode("ascii"), "scrubbed": True}


def _complete(request: ModelRequest, key: str) -> ModelResponse:
    """Send the request, retrying transient failures.

    1. Check the URL against the workspace's egress policy and build the body.
    2. POST it to the checked address, up to ``MAX_ATTEMPTS`` times while the failure is transient.
    3. Parse the chat.completion reply: anything that cannot be used as it
       came (too large, cut off, not JSON, the wrong shape) is a permanent
       ``invalid_response`` that keeps the bytes received.
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
            attempts.append(_attempt(reply.status, None, started))
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


def _post(client: httpx.Client, target, payload: bytes, headers: dict, key: str, timeout: float) -> "_Received":
    """One attempt: the reply if it is a success, else ``_Failed``. Once a
    success status has arrived the model has answered: what goes wrong while
    reading the body is the reply's fault (``_Received.problem``), never a
    reason to call again."""
    try:
        with stream_to(client, target, content=payload, headers=headers, timeout=timeout) as reply:
            status = reply.status_code
            if status == 429 or status >= 500:
                raise _Failed(f"HTTP {status}", status=status, transient=True, retry_after=_retry_after(reply))
            received = _receive(reply, timeout)
    except httpx.TimeoutException as error:
        raise _Failed(f"timed out ({type(error).__name__})", status=None, transient=True) from None
    except httpx.TransportError as error:
        message = _scrub(f"connection failed: {type(error).__name__}: {error}", key)
        raise _Failed(message, status=None, transient=True) from None
    if not 200 <= status < 300:
        text = received.raw[:300].decode("utf-8", errors="replace")
        raise _Failed(f"HTTP {status}: {_scrub(text, key)}", status=status, transient=False)
    return received


@dataclass(frozen=True)
class _Received:
    status: int
    content_type: str
    raw: bytes
    problem: str | None  # why the body is incomplete, if it is

    def record(self) -> dict:
        """The reply as kept on a failed step: the exact bytes, whatever they are."""
        return {"status": self.status, "content_type": self.content_type, "size": len(self.raw),
                "body_base64": base64.b64encode(self.raw).decode("ascii")}  # fmt: skip


def _receive(reply: httpx.Response, timeout: float) -> _Received:
    """Read the body up to KEEL_MODEL_REPLY_MAX_BYTES and within ``timeout``
    seconds in all (a server dripping bytes would hold the worker otherwise)."""
    limit = settings.KEEL_MODEL_REPLY_MAX_BYTES
    deadline = time.monotonic() + timeout
    chunks, size, problem = [], 0, None
    try:
        for chunk in reply.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                problem = f"the reply is larger than {limit} bytes"
                break
            if time.monotonic() > deadline:
                problem = f"the reply took longer than {timeout:g} s to arrive"
                break
    except httpx.HTTPError as error:  # cut off (RemoteProtocolError), stalled, or a broken encoding
        problem = f"the reply broke off after {size} bytes ({type(error).__name__})"
    content_type = reply.headers.get("Content-Type", "")
    return _Received(reply.status_code, content_type, b"".join(chunks)[: limit + 1], problem)


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


def _parse(request: ModelRequest, body: dict, reply: _Received, attempts: list[dict]) -> ModelResponse:
    def invalid(reason: str) -> ProviderError:
        message = f"invalid_response: {reason}"
        attempts[-1]["error"] = message
        return ProviderError(message, transient=False, attempts=tuple(attempts), received=reply.record())

    if reply.problem:
        raise invalid(reply.problem)
    media_type = reply.content_type.split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise invalid(f"the content type is {media_type or 'missing'}, not application/json")
    try:
        received = json.loads(reply.raw.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite)
        _storable(received, "reply")
    except UnicodeDecodeError as error:
        raise invalid(f"the reply is not UTF-8 (byte {error.start})") from None
    except RecursionError:
        raise invalid("the reply is nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, a refused constant or number, an unstorable string
        raise invalid(f"the reply is not usable JSON: {error}") from None
    if not isinstance(received, dict):
        raise invalid("not a JSON object")
    choices = received.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise invalid("no choices")
    message = choices[0].get("message")
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str):
        raise invalid("choices[0].message.content is not a string")

    usage = received.get("usage")
    if usage is None:
        # Some local servers leave usage out; the tokens count as 0 and the attempt says why.
        attempts[-1]["note"] = "no usage in the reply: tokens counted as 0"
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
    if not isinstance(usage, dict):
        raise invalid("usage is not an object")
    tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_TOKENS for n in tokens):
        raise invalid(f"usage.prompt_tokens and usage.completion_tokens must be counts up to {MAX_TOKENS}")
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


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:40]} is out of range")
    return number


def _storable(value, path: str, depth: int = 0) -> None:
    """Every string (key or value) must be storable and hashable as UTF-8:
    no lone surrogate (``"\\ud83d"``), no NUL (which PostgreSQL's jsonb refuses)."""
    if depth > MAX_REPLY_DEPTH:
        raise ValueError(f"{path} is nested more than {MAX_REPLY_DEPTH} levels deep")
    if isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, f"a key in {path}")
            _storable(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _storable(item, f"{path}[{index}]", depth + 1)


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"{path[:200]} holds a lone surrogate at character {error.start}") from None
    if "\x00" in text:
        raise ValueError(f"{path[:200]} holds a NUL character")

"""The HTTP exchange every remote model provider makes, with one set of rules.

A provider (openai, anthropic, azure_openai) says where to POST, what JSON body
and which headers (its key among them), and how to read an error reply's body;
this module does the rest, the same way for each:

- the key is the workspace credential the model config names, read at call
  time; everything a provider returns or raises passes ``key_scrubbed``, so the
  key reaches no recording, attempt, error message or log line;
- the request goes only to the address the workspace's egress policy allows
  (``pipelines.http.workspace_target``), never following a redirect;
- the body is serialized once and recorded as parsed back from those bytes, so
  the recording is exactly what was sent;
- 429, 5xx (Anthropic's 529 among them), timeouts and connection errors are
  transient: retried up to ``MAX_ATTEMPTS`` times inside one call, waiting what
  the server asks (``retry-after-ms``, then ``retry-after`` in seconds, at most
  ``RETRY_AFTER_CAP_SECONDS``) or an exponential backoff; what still fails is a
  transient ``ProviderError`` the step's own retry may try later. Any other
  status is permanent and not retried;
- every attempt is recorded (status, error, time taken) with the rate-limit and
  request-id headers the server sent (``x-ratelimit-*``, ``anthropic-ratelimit-*``,
  ``retry-after``, ...), so an operator sees how close a workspace runs to its quota;
- a success reply is read up to KEEL_MODEL_REPLY_MAX_BYTES and within the
  timeout; one that cannot be used as it came (cut off, too large, not JSON,
  not storable, the wrong shape) is a permanent ``invalid_response`` that keeps
  the bytes received: the model answered, and asking again would pay again.
"""

import base64
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from django.conf import settings

from governance.credential_sources import CredentialError, scrub
from governance.credentials import credential_value
from governance.egress import EgressError
from pipelines.http import shared_client, stream_to, workspace_target
from pipelines.providers.base import ModelRequest, ModelResponse, ProviderError

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
# Waits between attempts: BACKOFF_BASE_SECONDS × 2^(attempt - 1), at most BACKOFF_CAP_SECONDS.
# No jitter: with three attempts per call the herd is small, and tests stay predictable.
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 8.0
# A server asking for a longer pause than this gets this much: a worker should not
# sit idle for minutes inside one call when the step can be retried later.
RETRY_AFTER_CAP_SECONDS = 20.0
# A reply nests a few levels; token counts must fit the StepRun's integer columns.
MAX_REPLY_DEPTH = 64
MAX_TOKENS = 2**31 - 1
# Reply headers worth keeping on an attempt: how close the workspace runs to its
# provider's limits, and the id a provider's support asks for.
KEPT_HEADER_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")
KEPT_HEADERS = ("retry-after", "retry-after-ms", "request-id", "x-request-id", "apim-request-id")

# How a provider reads an error reply: (status, body bytes) -> a short description, or "".
Describe = Callable[[int, bytes], str]


class _Failed(Exception):
    """One attempt that failed: worth retrying or not, with the HTTP status if there was one."""

    def __init__(self, message: str, *, status: int | None, transient: bool, retry_after: float | None = None,
                 headers: dict | None = None):  # fmt: skip
        super().__init__(message)
        self.status = status
        self.transient = transient
        self.retry_after = retry_after
        self.headers = headers or {}


@dataclass(frozen=True)
class Received:
    status: int
    content_type: str
    raw: bytes
    problem: str | None  # why the body is incomplete, if it is
    headers: dict = field(default_factory=dict)  # the kept headers (KEPT_HEADERS)

    def record(self) -> dict:
        """The reply as kept on a failed step: the exact bytes, whatever they are."""
        return {"status": self.status, "content_type": self.content_type, "size": len(self.raw),
                "body_base64": base64.b64encode(self.raw).decode("ascii")}  # fmt: skip


@dataclass
class Exchange:
    """A call that got a success status: the body as sent, the reply as received, every attempt."""

    body: dict
    reply: Received
    attempts: list[dict]

    def invalid(self, reason: str) -> ProviderError:
        """The permanent failure of a reply that arrived but cannot be used, keeping its bytes."""
        message = f"invalid_response: {reason}"
        self.attempts[-1]["error"] = message
        return ProviderError(message, transient=False, attempts=tuple(self.attempts), received=self.reply.record())

    def json(self) -> dict:
        """The reply as a JSON object every string of which can be stored, else ``invalid``."""
        reply = self.reply
        if reply.problem:
            raise self.invalid(reply.problem)
        media_type = reply.content_type.split(";")[0].strip().lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            raise self.invalid(f"the content type is {media_type or 'missing'}, not application/json")
        try:
            received = json.loads(reply.raw.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite)
            _storable(received, "reply")
        except UnicodeDecodeError as error:
            raise self.invalid(f"the reply is not UTF-8 (byte {error.start})") from None
        except RecursionError:
            raise self.invalid("the reply is nested too deeply") from None
        except ValueError as error:  # JSONDecodeError, a refused constant or number, an unstorable string
            raise self.invalid(f"the reply is not usable JSON: {error}") from None
        if not isinstance(received, dict):
            raise self.invalid("not a JSON object")
        return received


def is_count(value: object) -> bool:
    """A token count a StepRun can store."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS


def api_key(request: ModelRequest, *, required: bool = False) -> str:
    """The value of the credential the request names ("" when it names none and
    none is ``required``: a local server that wants no key)."""
    if not (request.credential or request.api_key_env):
        if required:
            message = f"The {request.provider} provider needs a credential holding its API key."
            raise ProviderError(message, transient=False)
        return ""
    try:
        return credential_value(workspace_id=request.workspace_id, slug=request.credential,
                                env_name=request.api_key_env)  # fmt: skip
    except CredentialError as error:
        raise ProviderError(f"API key: {error}", transient=False) from None


def key_scrubbed(key: str, call: Callable[[], ModelResponse]) -> ModelResponse:
    """``call()``'s response, or its ProviderError, with every echo of ``key`` replaced."""
    try:
        response = call()
    except ProviderError as error:
        raise ProviderError(scrub(str(error), [key]), transient=error.transient,
                            attempts=scrub(error.attempts, [key]),
                            received=_scrub_received(error.received, key)) from None  # fmt: skip
    return ModelResponse(
        text=scrub(response.text, [key]),
        input_tokens=response.input_tokens,
        output_tokens=response.output_tokens,
        cost=response.cost,
        request_body=response.request_body,
        response_body=scrub(response.response_body, [key]),
        attempts=scrub(response.attempts, [key]),
    )


def _scrub_received(received: dict | None, key: str) -> dict | None:
    """The bytes of an unusable reply as received, but for an echoed key."""
    if not received or not key:
        return received
    raw = base64.b64decode(received["body_base64"])
    if key.encode() not in raw:
        return received
    raw = raw.replace(key.encode(), b"[redacted]")
    return {**received, "size": len(raw), "body_base64": base64.b64encode(raw).decode("ascii"), "scrubbed": True}


def fixed_fields_check(extra_params: dict, fixed: tuple[str, ...]) -> None:
    """extra_params may add to the body, never replace what the release fixes,
    or the recorded model config would not be what was sent."""
    clashes = sorted(set(extra_params) & set(fixed))
    if clashes:
        raise ProviderError(
            f"extra_params may not override {', '.join(clashes)}: set them on the model config.", transient=False
        )


def post_json(request: ModelRequest, *, url: str, body: dict, headers: dict, key: str,
              describe: Describe) -> Exchange:  # fmt: skip
    """POST ``body`` to ``url``, retrying transient failures; the exchange of
    the first success status, else a ProviderError.

    1. Check the URL against the workspace's egress policy and serialize the body.
    2. POST it to the checked address, up to ``MAX_ATTEMPTS`` times while the failure is transient.
    """
    try:
        target = workspace_target(url, request.workspace_id)
    except EgressError as error:
        raise ProviderError(f"egress refused: {error}", transient=False) from None
    # Serialized here rather than by httpx, and recorded as parsed back, so the
    # recording is exactly what was sent and shares nothing with the request.
    try:
        payload = json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise ProviderError(f"The request body is not valid JSON: {error}", transient=False) from None
    sent = json.loads(payload)
    headers = {"Content-Type": "application/json", "Accept": "application/json", **headers}

    attempts: list[dict] = []
    # The timeout bounds each phase (connect, each read, write); the shared
    # client follows no redirects, so the key only goes to the configured host.
    client = shared_client()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        started = time.monotonic()
        try:
            reply = _post(client, target, payload, headers, key, request.timeout_seconds, describe)
        except _Failed as failure:
            attempts.append(_attempt(failure.status, str(failure), started, failure.headers))
            if not failure.transient:
                raise ProviderError(str(failure), transient=False, attempts=tuple(attempts)) from None
            if attempt == MAX_ATTEMPTS:
                message = f"{failure} (gave up after {attempt} attempts)"
                raise ProviderError(message, transient=True, attempts=tuple(attempts)) from None
            delay = _delay(attempt, failure.retry_after)
            logger.warning("Model call to %s failed (%s); retrying in %.2fs", _where(url), failure, delay)
            time.sleep(delay)
        else:
            attempts.append(_attempt(reply.status, None, started, reply.headers))
            return Exchange(body=sent, reply=reply, attempts=attempts)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _post(client: httpx.Client, target, payload: bytes, headers: dict, key: str, timeout: float,
          describe: Describe) -> Received:  # fmt: skip
    """One attempt: the reply if it is a success, else ``_Failed``. Once a
    success status has arrived the model has answered: what goes wrong while
    reading the body is the reply's fault (``Received.problem``), never a
    reason to call again."""
    try:
        with stream_to(client, target, content=payload, headers=headers, timeout=timeout) as reply:
            received = _receive(reply, timeout)
    except httpx.TimeoutException as error:
        raise _Failed(f"timed out ({type(error).__name__})", status=None, transient=True) from None
    except httpx.TransportError as error:
        message = _scrub(f"connection failed: {type(error).__name__}: {error}", key)
        raise _Failed(message, status=None, transient=True) from None
    status = received.status
    if 200 <= status < 300:
        return received
    detail = _scrub(describe(status, received.raw), key)
    message = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
    transient = status == 429 or status >= 500
    retry_after = _retry_after(received.headers) if transient else None
    raise _Failed(message, status=status, transient=transient, retry_after=retry_after, headers=received.headers)


def _receive(reply: httpx.Response, timeout: float) -> Received:
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
    kept = {name.lower(): value[:200] for name, value in reply.headers.items() if _kept(name.lower())}
    return Received(reply.status_code, content_type, b"".join(chunks)[: limit + 1], problem, kept)


def _kept(name: str) -> bool:
    return name in KEPT_HEADERS or name.startswith(KEPT_HEADER_PREFIXES)


def _retry_after(headers: dict) -> float | None:
    """The pause the server asks for: ``retry-after-ms`` (Azure), else ``retry-after``
    in seconds. Only numbers: an HTTP date would need the server's clock to agree with ours."""
    for name, scale in (("retry-after-ms", 1000), ("retry-after", 1)):
        try:
            seconds = float(headers.get(name, "")) / scale
        except ValueError:
            continue
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None


def _delay(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(retry_after, RETRY_AFTER_CAP_SECONDS)
    return min(BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), BACKOFF_CAP_SECONDS)


def _attempt(status: int | None, error: str | None, started: float, headers: dict) -> dict:
    attempt = {"status": status, "error": error, "elapsed_ms": round((time.monotonic() - started) * 1000, 1)}
    if headers:
        attempt["headers"] = dict(headers)
    return attempt


def _where(url: str) -> str:
    # A log line names the endpoint, not its query (an api-version, and nothing else, today).
    return url.split("?", 1)[0]


def _scrub(text: str, key: str) -> str:
    # Servers and proxies sometimes echo what they were sent; the key must not reach a recording.
    return text.replace(key, "[redacted]") if key else text


def error_text(raw: bytes, limit: int = 300) -> str:
    """The start of an error reply's body, as text."""
    return raw[:limit].decode("utf-8", errors="replace").strip()


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

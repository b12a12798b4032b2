"""Real HTTP servers on 127.0.0.1 that speak Anthropic's Messages API and
Azure OpenAI's deployment API, for provider tests.

Each is a ChatServer (it records every request, then answers from the test's
script) that first checks what its protocol requires, as the real service
does, and refuses in that service's error shape: the path, the key header,
the version, the body's required fields. A test sees the refusal a wrong
request would get in production, not a reply it did not deserve.
"""

from tests.pipelines.chat_server import ChatServer, Reply


def anthropic_message(text: str = "label: refund\nconfidence: 0.80", *, input_tokens: int = 42,
                      output_tokens: int = 7, headers: dict | None = None, **usage) -> Reply:  # fmt: skip
    """A Messages API reply, as Anthropic sends it."""
    return Reply(
        body={
            "id": "msg_01TestMessage",
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens, **usage},
        },
        headers=headers or {},
    )


def anthropic_error(status: int, kind: str, message: str, headers: dict | None = None) -> Reply:
    """An error reply in Anthropic's shape, with its request-id."""
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011Test"}
    return Reply(status=status, body=body, headers={"request-id": "req_011Test", **(headers or {})})


def azure_completion(content: str = "label: refund\nconfidence: 0.80", *, prompt_tokens: int = 42,
                     completion_tokens: int = 7, headers: dict | None = None) -> Reply:  # fmt: skip
    """A chat.completion as Azure OpenAI sends it: OpenAI's, with its content filter's results."""
    filters = {"hate": {"filtered": False, "severity": "safe"}, "violence": {"filtered": False, "severity": "safe"}}
    return Reply(
        body={
            "id": "chatcmpl-azure",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "gpt-4o-mini-2024-07-18",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": filters}],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content},
                    "content_filter_results": filters,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        },
        headers={"apim-request-id": "3f2c-test", **(headers or {})},
    )


def azure_error(status: int, code: str, message: str, headers: dict | None = None) -> Reply:
    """An error reply in Azure OpenAI's shape."""
    return Reply(status=status, body={"error": {"code": code, "message": message}}, headers=headers or {})


class AnthropicServer(ChatServer):
    """``base_url`` is the API's root: requests go to ``/v1/messages`` with ``x-api-key``."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    @property
    def base_url(self) -> str:
        return super().base_url.removesuffix("/v1")

    def _next(self, request: dict) -> Reply:
        refusal = self._refusal(request)
        if refusal is not None:
            with self._lock:
                self.requests.append(request)
            return refusal
        return super()._next(request)

    def _refusal(self, request: dict) -> Reply | None:
        headers, body = request["headers"], request["body"]
        if request["path"] != "/v1/messages":
            return anthropic_error(404, "not_found_error", f"Not found: {request['path']}")
        if headers.get("x-api-key") != self.key:
            return anthropic_error(401, "authentication_error", "invalid x-api-key")
        if not headers.get("anthropic-version"):
            return anthropic_error(400, "invalid_request_error", "anthropic-version: header is required")
        if not isinstance(body, dict):
            return anthropic_error(400, "invalid_request_error", "The request body is not valid JSON.")
        for name in ("model", "max_tokens", "messages"):
            if name not in body:
                return anthropic_error(400, "invalid_request_error", f"{name}: Field required")
        if any(message.get("role") not in ("user", "assistant") for message in body["messages"]):
            return anthropic_error(400, "invalid_request_error", "messages: roles must be user or assistant")
        return None


class AzureServer(ChatServer):
    """``base_url`` is the resource's endpoint: requests go to
    ``/openai/deployments/<deployment>/chat/completions?api-version=...`` with ``api-key``."""

    def __init__(self, key: str, deployment: str) -> None:
        super().__init__()
        self.key = key
        self.deployment = deployment

    @property
    def base_url(self) -> str:
        return super().base_url.removesuffix("/v1")

    def _next(self, request: dict) -> Reply:
        refusal = self._refusal(request)
        if refusal is not None:
            with self._lock:
                self.requests.append(request)
            return refusal
        return super()._next(request)

    def _refusal(self, request: dict) -> Reply | None:
        path, _, query = request["path"].partition("?")
        if request["headers"].get("api-key") != self.key:
            return azure_error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint.")
        if path != f"/openai/deployments/{self.deployment}/chat/completions":
            return azure_error(404, "DeploymentNotFound", "The API deployment for this resource does not exist.")
        if not query.startswith("api-version="):
            return azure_error(404, "404", "Resource not found")
        if not isinstance(request["body"], dict) or "messages" not in request["body"]:
            return azure_error(400, "BadRequest", "messages is required")
        return None

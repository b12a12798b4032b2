"""A real chat-completions server on 127.0.0.1 for provider tests.

Each test gives it a script: one ``Reply`` per expected request, in order. It
records every request it receives (path, headers, parsed JSON body) before
answering, so a test can check exactly what went over the wire, including
requests the client gave up on.
"""

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    body: dict | bytes = b""  # a dict is sent as JSON
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    content_type: str | None = None  # by default application/json for a dict, text/plain for bytes
    declared_length: int | None = None  # a Content-Length other than the body's: the reply is cut off


def completion(
    content: str = "label: refund\nconfidence: 0.80", *, prompt_tokens: int = 42, completion_tokens: int = 7
):
    """A normal chat.completion reply, as OpenAI sends it."""
    return Reply(
        body={
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "test-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


class ChatServer:
    """Start with ``with ChatServer() as server:``; ``server.base_url`` ends in /v1."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        # Instead of the script: the reply for each request, chosen from it (for concurrent runs).
        self.route: Callable[[dict], Reply] | None = None
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        # Set on exit, so a handler still sleeping through a "slow" reply wakes up
        # and the server stops without waiting out the delay.
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        # A short poll interval: shutdown() waits for the loop to notice, once per test.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "ChatServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _next(self, request: dict) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self.route is not None:
                return self.route(request)
            if not self.script:
                return Reply(status=599, body=b"the test's script has no reply left for this request")
            return self.script.pop(0)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                request = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
                reply = server._next({**request, "body": body, "raw": raw})
                if reply.delay and server._stopping.wait(reply.delay):
                    return  # the test is over; nobody is listening
                payload = json.dumps(reply.body).encode() if isinstance(reply.body, dict) else reply.body
                try:
                    self.send_response(reply.status)
                    is_json = isinstance(reply.body, dict)
                    content_type = reply.content_type
                    if content_type is None:
                        content_type = "application/json" if is_json else "text/plain"
                    if content_type:  # "" sends none
                        self.send_header("Content-Type", content_type)
                    length = len(payload) if reply.declared_length is None else reply.declared_length
                    self.send_header("Content-Length", str(length))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up: that is what the slow replies are for

            def log_message(self, format, *args) -> None:
                pass  # keep the test output clean

        return Handler

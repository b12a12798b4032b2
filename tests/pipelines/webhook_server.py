"""A real webhook receiver on 127.0.0.1 for delivery tests.

Each test gives it a script: one ``Answer`` per expected request, in order
(when the script runs out it answers 200). It records every request's path,
headers and raw body before answering, so a test can verify the signature
over exactly the bytes that went over the wire.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=lambda: {"X-Receiver": "orders-service"})
    delay: float = 0.0  # seconds to wait before answering


class WebhookServer:
    """Start with ``with WebhookServer() as server:``; post to ``server.url``."""

    def __init__(self) -> None:
        self.script: list[Answer] = []
        # Instead of the script: the answer for each request, chosen from it and the requests before it.
        self.route: Callable[[dict, list[dict]], Answer] | None = None
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # wakes a handler sleeping through a slow answer
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/hooks/keel"

    @property
    def delivery_ids(self) -> set[str]:
        """The distinct delivery ids received: what a receiver dropping repeats would process."""
        return {request["headers"].get("x-keel-delivery") for request in self.requests}

    def __enter__(self) -> "WebhookServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _next(self, request: dict) -> Answer:
        with self._lock:
            earlier = list(self.requests)
            self.requests.append(request)
            if self.route is not None:
                return self.route(request, earlier)
            return self.script.pop(0) if self.script else Answer()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                answer = server._next({"path": self.path, "headers": headers, "raw": raw})
                if answer.delay and server._stopping.wait(answer.delay):
                    return  # the test is over; nobody is listening
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(answer.body)))
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender is gone (killed mid-delivery): that is what the slow answers are for

            def log_message(self, format, *args) -> None:
                pass  # keep the test output clean

        return Handler

"""The reviewer's queue page, as a reviewer's browser meets it, with
``OPEN_TASKS`` open review tasks.

- ``queue_page_p95_ms``: ``GET /review/`` signed in as the demo's reviewer,
  one request after another: the queue's counts come from the cache.
- ``queue_page_uncached_p95_ms``: the same, with a task closed between
  requests (opened, then rejected with a reason through the web app, untimed),
  so that every timed page counts the queue again. Rejected, not approved: an
  approval waits out its undo window (reviews/services.py) before it is recorded,
  and the task stays in the queue meanwhile; a rejection closes it at once.

Keel runs under gunicorn as the production guide runs it, from the checkout
measured (DEBUG off, its cache in Redis); the client is one plain HTTP
client in this process that waits for each answer, so it never queues behind
itself. The tasks are seeded once through the checkout's own ``manage.py
shell`` (``seed_queue.py``) and topped up on every run. Each repeat measures
every side in turn, the order rotating; the figures are each repeat's 95th
percentile. A rejection enqueues its run's notice on the side's Redis
database, which no worker drains and which is flushed afterwards.
"""

import re
import time
from contextlib import ExitStack
from http.cookies import SimpleCookie

import httpx

from tests.bench import outside
from tests.bench.outside import Checkout

OPEN_TASKS = 100_000
REPEATS = 3
REQUESTS = 20  # of each kind, per side and repeat
REVIEWER, PASSWORD = "reviewer", "keel-demo"  # keel_demo's documented demo user
TASK_LINK = re.compile(r'href="/review/tasks/(\d+)/"')


def measure(checkouts: list[Checkout]) -> dict[str, dict[str, list[float]]]:
    envs = {}
    for checkout in checkouts:
        env = envs[checkout.side] = outside.env_for(checkout, "queue")
        outside.redis_flush(checkout.redis_url)
        outside.demo_ready(checkout, env)
        seed_env = {**env, "KEEL_BENCH_OPEN_TASKS": str(OPEN_TASKS)}
        seeding = outside.manage(checkout, seed_env, "shell", "--no-imports", "-c",
                                 (outside.HERE / "seed_queue.py").read_text())  # fmt: skip
        if seeding.strip():
            print(f"  {checkout.side}: {seeding.strip()}", flush=True)
    try:
        with ExitStack() as stack:
            reviewers = {}
            for checkout in checkouts:
                base = stack.enter_context(outside.keel_server(checkout, envs[checkout.side], "queue"))
                reviewers[checkout.side] = stack.enter_context(_Reviewer(base))
            figures = {side: {"queue_page_p95_ms": [], "queue_page_uncached_p95_ms": []} for side in reviewers}
            for reviewer in reviewers.values():
                reviewer.queue()  # warm
            for repeat in range(REPEATS):
                for side in outside.rotations(list(reviewers), repeat):
                    cached, uncached = reviewers[side].measure(REQUESTS)
                    figures[side]["queue_page_p95_ms"].append(outside.p95_ms(cached))
                    figures[side]["queue_page_uncached_p95_ms"].append(outside.p95_ms(uncached))
                print(f"  repeat {repeat + 1}/{REPEATS}: " + ", ".join(
                    f"{side} {values['queue_page_p95_ms'][-1]:.0f}/{values['queue_page_uncached_p95_ms'][-1]:.0f} ms"
                    for side, values in figures.items()
                ), flush=True)  # fmt: skip
    finally:
        for checkout in checkouts:
            outside.redis_flush(checkout.redis_url)
    return figures


class _Reviewer:
    """A signed-in reviewer's browser, as far as the pages go. The cookies are
    kept here: Keel sets them Secure (DEBUG off), and this client speaks
    plain HTTP to 127.0.0.1, where no proxy terminates TLS."""

    def __init__(self, base: str) -> None:
        self.client = httpx.Client(base_url=base, timeout=60, follow_redirects=False)
        self.cookies: dict[str, str] = {}

    def __enter__(self):
        page = self._send("GET", "/review/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        signed_in = self._send("POST", "/review/login/", data={"username": REVIEWER, "password": PASSWORD,
                                                                "csrfmiddlewaretoken": token})  # fmt: skip
        if signed_in.status_code != 302:
            raise RuntimeError(f"the demo reviewer could not sign in: {signed_in.status_code}")
        return self

    def __exit__(self, *exc) -> None:
        self.client.close()

    def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if method == "POST" and "csrftoken" in self.cookies:
            headers["X-CSRFToken"] = self.cookies["csrftoken"]
        response = self.client.request(method, path, headers=headers, **kwargs)
        for line in response.headers.get_list("set-cookie"):
            for name, morsel in SimpleCookie(line).items():
                self.cookies[name] = morsel.value
        return response

    def queue(self) -> httpx.Response:
        response = self._send("GET", "/review/")
        if response.status_code != 200:
            raise RuntimeError(f"GET /review/: {response.status_code}")
        return response

    def measure(self, requests: int) -> tuple[list[float], list[float]]:
        """(cached, uncached) seconds of ``requests`` queue pages each."""
        cached, uncached = [], []
        page = self.queue()  # counts cached from here on, until a task closes
        for _ in range(requests):
            started = time.perf_counter()
            page = self.queue()
            cached.append(time.perf_counter() - started)
        for _ in range(requests):
            self._close_one(page)
            started = time.perf_counter()
            page = self.queue()
            uncached.append(time.perf_counter() - started)
        return cached, uncached

    def _close_one(self, page: httpx.Response) -> None:
        """Open the queue's first task and reject it, as a reviewer does."""
        match = TASK_LINK.search(page.text)
        if match is None:
            raise RuntimeError("the queue page lists no task to open")
        task = match.group(1)
        opened = self._send("GET", f"/review/tasks/{task}/")
        if opened.status_code != 200:
            raise RuntimeError(f"GET /review/tasks/{task}/: {opened.status_code}")
        rejection = {"decision": "reject", "reason": "benchmark"}
        decided = self._send("POST", f"/review/tasks/{task}/decide/", data=rejection)
        if decided.status_code != 302:
            raise RuntimeError(f"rejecting task {task}: {decided.status_code} {decided.text[:300]}")

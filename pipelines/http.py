"""One HTTP client per process for model calls and webhooks.

Building an ``httpx.Client`` loads the CA bundle into a new TLS context, which
costs tens of milliseconds of CPU: far more than a call to a model on the same
network. One shared client (thread-safe, with a keep-alive connection pool)
serves every call; each call passes its own timeout. It is made on first use
in each process, so a forked worker never shares its parent's sockets.
"""

import os
import threading

import httpx

_lock = threading.Lock()
_clients: dict[int, httpx.Client] = {}

# Enough pooled connections for a worker's threads all calling at once.
LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50)


def shared_client() -> httpx.Client:
    pid = os.getpid()
    client = _clients.get(pid)
    if client is None:
        with _lock:
            client = _clients.get(pid)
            if client is None:
                # Redirects are never followed: an Authorization header or a
                # signed body only ever goes to the configured host.
                client = _clients[pid] = httpx.Client(follow_redirects=False, limits=LIMITS)
    return client

"""One HTTP client per process for model calls and webhooks, and sending
only where the workspace's egress policy allows (``post_to``).

Invariants: one shared client per process (thread-safe, with a keep-alive
connection pool) serves every call, and each call passes its own timeout; the
client is made on first use in each process, so a forked worker never shares
its parent's sockets; nothing is sent to an address the egress policy refuses.
"""

import os
import threading

import httpx
from django.db import connection

from governance.egress import Target, egress_target
from governance.models import Workspace

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


def workspace_target(url: str, workspace_id: int | None) -> Target:
    """Where a call of the workspace to ``url`` goes: the checked address
    (``governance.egress``); raises EgressError when it may not go there."""
    allowed = Workspace.objects.filter(pk=workspace_id).values_list("allowed_hosts", flat=True).first()
    # The last read before the call (the credential is read first): as the engine does before
    # a step that reaches outside, the connection goes back to its pool (DATABASE_POOL_MAX_SIZE)
    # rather than being held while the call waits on the network.
    if connection.settings_dict.get("OPTIONS", {}).get("pool") and not connection.in_atomic_block:
        connection.close()
    return egress_target(url, allowed or [])


def post_to(client: httpx.Client, target: Target, *, content: bytes, headers: dict, timeout: float) -> httpx.Response:
    """POST to the checked address, addressed to its host (Host header, TLS name)."""
    return client.post(target.url, content=content, headers={**headers, **target.headers},
                       extensions=target.extensions, timeout=timeout)  # fmt: skip


def stream_to(client: httpx.Client, target: Target, *, content: bytes, headers: dict, timeout: float):
    """``post_to``'s request with its reply read as it arrives (a context manager)."""
    return client.stream("POST", target.url, content=content, headers={**headers, **target.headers},
                         extensions=target.extensions, timeout=timeout)  # fmt: skip

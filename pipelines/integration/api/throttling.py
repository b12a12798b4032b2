"""Requests per token per minute, counted in the cache (Redis in production,
so that every web process counts against one limit)."""

import time

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.throttling import BaseThrottle

from pipelines.models import ServiceToken

WINDOW_SECONDS = 60
clock = time.time  # replaced by tests that freeze the window


class TokenRateThrottle(BaseThrottle):
    """A fixed one-minute window per token: one atomic INCR per request (DRF's
    own throttles read and rewrite a list of timestamps, which two processes
    can interleave). A client may burst up to twice the rate across a window
    boundary, which is the usual price of a fixed window."""

    def allow_request(self, request, view) -> bool:
        token = request.auth
        if not isinstance(token, ServiceToken):
            return True  # only reached by views that need no credentials
        now = clock()
        window = int(now // WINDOW_SECONDS)
        count = _count(f"keel:throttle:token:{token.pk}:{window}")
        self._wait = (window + 1) * WINDOW_SECONDS - now
        return count <= settings.KEEL_API_RATE_PER_MINUTE

    def wait(self) -> float:
        return max(self._wait, 1.0)


def _count(key: str) -> int:
    """Count one more request in the window's counter, created when missing.

    On Redis one round trip: ``SET NX`` with the expiry, then ``INCR``, in one
    pipeline (Django's ``incr`` asks whether the key exists first, a round
    trip of its own). Elsewhere (the per-process memory cache) count first and
    create the counter only when it is missing.
    """
    backend = caches[DEFAULT_CACHE_ALIAS]
    if isinstance(backend, RedisCache):
        key = backend.make_and_validate_key(key)
        pipeline = _client(backend).pipeline(transaction=False)
        _, count = pipeline.set(key, 0, ex=WINDOW_SECONDS + 5, nx=True).incr(key).execute()
        return count
    try:
        return backend.incr(key)
    except ValueError:  # the window's first request
        if backend.add(key, 1, timeout=WINDOW_SECONDS + 5):
            return 1
        return backend.incr(key)  # another thread created it meanwhile


_clients: dict[int, tuple] = {}


def _client(backend: RedisCache):
    """A client over the cache's own connection pool (so ``cache.get`` reads
    the count: Django stores integers unpickled), one per pool. Django's
    ``get_client`` builds a new ``redis.Redis`` for every call, which costs
    more than the round trip."""
    pool = backend._cache._get_connection_pool(write=True)
    kept = _clients.get(id(pool))
    if kept is None or kept[0] is not pool:
        kept = _clients[id(pool)] = (pool, backend._cache._client(connection_pool=pool))
    return kept[1]

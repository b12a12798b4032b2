"""Requests per token per minute, counted in the cache (Redis in production,
so that every web process counts against one limit)."""

import functools
import re
import time

import redis
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

    On Redis, one round trip a request: SET NX with the window's expiry, then
    INCR, pipelined through redis-py on the cache's (first, written) server
    under the cache's own key, which Django reads back as the number it is
    (Django's cache API takes three: ``add``, then ``incr``, which first asks
    whether the key exists). In the per-process memory cache, ``add`` creates
    the counter only if it is absent and ``incr`` is atomic. Either way, two
    processes never lose a request between them."""
    backend = caches[DEFAULT_CACHE_ALIAS]
    if isinstance(backend, RedisCache):
        key = backend.make_and_validate_key(key)
        location = settings.CACHES[DEFAULT_CACHE_ALIAS]["LOCATION"]
        server = re.split("[;,]", location)[0] if isinstance(location, str) else location[0]
        pipeline = _redis(server).pipeline(transaction=False)
        _, count = pipeline.set(key, 0, ex=WINDOW_SECONDS + 5, nx=True).incr(key).execute()
        return count
    backend.add(key, 0, timeout=WINDOW_SECONDS + 5)
    try:
        return backend.incr(key)
    except ValueError:  # the counter expired between the two calls: a new window
        backend.add(key, 0, timeout=WINDOW_SECONDS + 5)
        return backend.incr(key)


@functools.cache
def _redis(url: str) -> redis.Redis:
    # One client (and connection pool) per process and server; redis-py opens
    # new connections in a forked process (gunicorn's workers).
    return redis.Redis.from_url(url)

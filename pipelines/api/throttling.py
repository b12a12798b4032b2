"""Requests per token per minute, counted in the cache (Redis in production,
so that every web process counts against one limit)."""

import time

from django.conf import settings
from django.core.cache import cache
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
        key = f"keel:throttle:token:{token.pk}:{window}"
        # The window's counter exists for every request but its first: count
        # first and create it only when missing, rather than adding it on
        # every request (with Redis, a round trip each time).
        try:
            count = cache.incr(key)
        except ValueError:  # the window's first request
            if cache.add(key, 1, timeout=WINDOW_SECONDS + 5):
                count = 1
            else:  # another process created it meanwhile
                count = cache.incr(key)
        self._wait = (window + 1) * WINDOW_SECONDS - now
        return count <= settings.KEEL_API_RATE_PER_MINUTE

    def wait(self) -> float:
        return max(self._wait, 1.0)

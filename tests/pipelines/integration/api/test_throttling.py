"""Per-token rate limits, counted in Redis: 429 with Retry-After past the limit."""

import uuid

import pytest

from pipelines.integration.api import throttling
from tests.servers import require_redis


@pytest.fixture
def redis_cache(settings, monkeypatch):
    url = require_redis()
    # A prefix of its own, so no other test (or other checkout) sharing the Redis db counts with it.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": f"test-{uuid.uuid4().hex}",
        }
    }
    settings.KEEL_API_RATE_PER_MINUTE = 3
    # A frozen clock 20 seconds into a window: the four requests below cannot straddle two.
    monkeypatch.setattr(throttling, "clock", lambda: 1_800_000_000.0 + 20)
    yield


def test_a_token_over_its_rate_gets_429_with_retry_after(redis_cache, api_for, make_token, author, acme_pipeline):
    from django.core.cache import cache

    assert type(cache._cache).__name__ == "RedisCacheClient"
    _, plain = make_token(author, pipeline=acme_pipeline)
    _, other_plain = make_token(author, pipeline=acme_pipeline, name="second system")
    api = api_for(plain)
    assert [api.get("/api/v1/runs").status_code for _ in range(3)] == [200, 200, 200]
    refused = api.post_run(acme_pipeline.slug)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) == 40
    assert refused.json()["errors"][0]["field"] is None and "throttled" in refused.json()["errors"][0]["reason"]
    # Another token keeps its own count.
    assert api_for(other_plain).get("/api/v1/runs").status_code == 200


def test_the_next_window_lets_the_token_in_again(redis_cache, api_for, make_token, author, acme_pipeline, monkeypatch):
    _, plain = make_token(author, pipeline=acme_pipeline)
    api = api_for(plain)
    for _ in range(3):
        api.get("/api/v1/runs")
    assert api.get("/api/v1/runs").status_code == 429
    monkeypatch.setattr(throttling, "clock", lambda: 1_800_000_000.0 + 61)
    assert api.get("/api/v1/runs").status_code == 200


def test_the_windows_counter_counts_every_request_and_expires(redis_cache, api_for, make_token, author, acme_pipeline):
    from django.core.cache import cache

    token, plain = make_token(author, pipeline=acme_pipeline)
    api = api_for(plain)
    for _ in range(2):
        api.get("/api/v1/runs")
    key = f"keel:throttle:token:{token.pk}:{int((1_800_000_000.0 + 20) // 60)}"
    assert cache.get(key) == 2
    client = cache._cache.get_client(key)
    assert 0 < client.ttl(cache.make_and_validate_key(key)) <= throttling.WINDOW_SECONDS + 5


@pytest.mark.parametrize("backend", ["redis", "memory"])
def test_concurrent_requests_are_each_counted_once(backend, request):
    from concurrent.futures import ThreadPoolExecutor

    from django.core.cache import cache

    if backend == "redis":
        request.getfixturevalue("redis_cache")
    key = f"keel:throttle:token:concurrent:{uuid.uuid4().hex}"
    with ThreadPoolExecutor(max_workers=8) as pool:
        counts = list(pool.map(lambda _: throttling._count(key), range(40)))
    assert sorted(counts) == list(range(1, 41))
    assert cache.get(key) == 40

"""Reaching the services a test needs: skip when absent locally, fail in CI.

``KEEL_REQUIRE_SERVICES=1`` (set by .ci/run) turns every such skip into a
failure, so a green CI never hides a test that did not run.
"""

import os
import socket

import pytest

REQUIRED = os.environ.get("KEEL_REQUIRE_SERVICES") == "1"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if REQUIRED:
        pytest.fail(message + " and KEEL_REQUIRE_SERVICES=1")
    pytest.skip(message)


def require_redis() -> str:
    """A Redis URL for a test's own worker: the configured broker when it is
    Redis (so parallel checkouts each keep to their own database), else db 13."""
    require("Redis", "127.0.0.1", 6379)
    configured = os.environ.get("CELERY_BROKER_URL", "")
    return configured if configured.startswith("redis://") else "redis://127.0.0.1:6379/13"

"""Production hardening: the deploy checks pass with the documented settings,
sign-in is throttled per user and address (the address believed only from a
trusted proxy), failed sign-ins and refused access are logged on one line
each, sessions expire, and every response carries the security headers."""

import logging
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from config.logformat import SingleLineFormatter
from config.security import SIGNED_IN_AT, username_ref

BASE_DIR = Path(settings.BASE_DIR)


def production_env(tmp_path, **overrides) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DEBUG", "KEEL_", "SECURE_"))}
    env.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="keel.example.com",
        CSRF_TRUSTED_ORIGINS="https://keel.example.com",
        KEEL_CHECKPOINT_KEY=secrets.token_urlsafe(32),
        KEEL_VAR_DIR=str(tmp_path),
    )
    env.update(overrides)
    return {key: value for key, value in env.items() if value is not None}


def check_deploy(env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_check_deploy_passes_with_the_documented_production_settings(tmp_path):
    result = check_deploy(production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_fails_without_a_checkpoint_key(tmp_path):
    result = check_deploy(production_env(tmp_path, KEEL_CHECKPOINT_KEY=None))
    assert result.returncode != 0
    assert "keel.W001" in result.stderr + result.stdout


def sign_in(client, password, *, address="203.0.113.7", **headers):
    return client.post(
        reverse("admin:login"),
        {"username": "lead", "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
        **headers,
    )


@pytest.fixture
def lead_with_password(lead):
    lead.set_password("right-password-42")
    lead.save()
    return lead


def test_repeated_failures_lock_the_user_out_from_that_address(client, lead_with_password, settings, caplog):
    settings.AXES_FAILURE_LIMIT = 3
    caplog.set_level(logging.WARNING, logger="keel.security")
    for _ in range(3):
        assert sign_in(client, "wrong").status_code in (200, 429)
    locked = sign_in(client, "right-password-42")
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    failures = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sign-in failed")]
    assert len(failures) >= 3
    # The username is named by its keyed hash only: the same for each failure, never the name.
    assert f"user_ref={username_ref('lead')} address=203.0.113.7 at=" in failures[0]
    assert all("lead" not in failure for failure in failures)
    # The same user from another address is not locked out by those failures.
    assert sign_in(client, "right-password-42", address="198.51.100.9").status_code == 302


def test_a_forwarded_address_is_believed_only_from_a_trusted_proxy(client, lead_with_password, settings):
    settings.AXES_FAILURE_LIMIT = 2
    # From an untrusted peer, a new X-Forwarded-For per attempt does not dodge the lockout.
    for hop in ("10.0.0.1", "10.0.0.2"):
        sign_in(client, "wrong", HTTP_X_FORWARDED_FOR=hop)
    assert sign_in(client, "right-password-42", HTTP_X_FORWARDED_FOR="10.0.0.3").status_code == 429
    # Behind a trusted proxy, the forwarded client address is the one locked out.
    settings.KEEL_TRUSTED_PROXIES = ["127.0.0.1"]
    for _ in range(2):
        sign_in(client, "wrong", address="127.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.50")
    proxied = {"address": "127.0.0.1"}
    assert sign_in(client, "right-password-42", **proxied, HTTP_X_FORWARDED_FOR="192.0.2.50").status_code == 429
    ok = sign_in(client, "right-password-42", **proxied, HTTP_X_FORWARDED_FOR="192.0.2.51")
    assert ok.status_code == 302


def test_a_username_with_line_breaks_cannot_forge_a_log_line(client, db, caplog):
    caplog.set_level(logging.WARNING, logger="keel.security")
    forged = "nobody\r\n2026-01-01 00:00:00Z INFO keel.security sign-in ok: user=admin"
    client.post(reverse("admin:login"), {"username": forged, "password": "x"}, REMOTE_ADDR="203.0.113.8")
    record = next(r for r in caplog.records if r.getMessage().startswith("sign-in failed"))
    line = SingleLineFormatter("%(asctime)sZ %(levelname)s %(name)s %(message)s").format(record)
    assert "\n" not in line and "\r" not in line
    assert "nobody" not in line and f"user_ref={username_ref(forged)} " in line


def test_refused_access_is_logged_with_user_address_and_time(client, outsider, caplog):
    caplog.set_level(logging.WARNING, logger="keel.security")
    client.force_login(outsider)
    assert client.get(reverse("audit-timeline"), REMOTE_ADDR="203.0.113.9").status_code == 403
    refused = [r.getMessage() for r in caplog.records if r.getMessage().startswith("access refused")]
    assert refused and f"user={outsider.pk} address=203.0.113.9 method=GET path=/audit/ status=403 at=" in refused[0]
    assert "outsider" not in refused[0]


def test_staff_sessions_expire_after_thirty_idle_minutes_and_all_after_twelve_hours(client, auditor):
    client.force_login(auditor)
    assert client.get(reverse("audit-timeline")).status_code == 200
    assert client.session.get_expiry_age() == 30 * 60
    session = client.session
    session[SIGNED_IN_AT] = int(time.time()) - 12 * 60 * 60 - 1
    session.save()
    response = client.get(reverse("audit-timeline"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))


def test_responses_carry_the_security_headers(client, auditor):
    client.force_login(auditor)
    response = client.get(reverse("audit-timeline"))
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_state_changing_views_need_the_csrf_token(auditor, acme_config, superuser):
    from tests.audit.conftest import make_run

    acme_run = make_run(acme_config["pipeline"], superuser)
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(auditor)
    assert client.post(reverse("audit-run-reveal", args=[acme_run.pk])).status_code == 403

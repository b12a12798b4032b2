"""Settings come from the environment; a bad value stops start-up with a
message naming the variable. Each case starts a fresh process."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL")}
    clean.update({"KEEL_VAR_DIR": str(tmp_path), **env})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "maybe"}, "DEBUG must be true or false, not 'maybe'"),
        ({"DEBUG": "false", "ALLOWED_HOSTS": "keel.example.com"}, "SECRET_KEY must be set when DEBUG is false"),
        ({"DEBUG": "false", "SECRET_KEY": "x" * 60}, "ALLOWED_HOSTS must be set when DEBUG is false"),
        ({"DATABASE_URL": "mysql://root@localhost/keel"}, "DATABASE_URL must be a postgres:// or sqlite:// URL"),
        (
            {"DATABASE_CONN_MAX_AGE": "soon", "DATABASE_URL": "postgres://u@h/db"},
            "DATABASE_CONN_MAX_AGE must be a whole",
        ),
        (
            {"DATABASE_PREPARED_STATEMENTS": "sometimes", "DATABASE_URL": "postgres://u@h/db"},
            "DATABASE_PREPARED_STATEMENTS must be true or false",
        ),
        ({"KEEL_TASK_TIME_LIMIT": "-1"}, "KEEL_TASK_TIME_LIMIT must be at least 10"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR"),
    ],
)
def test_a_bad_environment_value_stops_start_up_naming_the_variable(tmp_path, env, message):
    result = manage("check", env=env, tmp_path=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_the_deploy_check_passes_with_the_documented_production_variables(tmp_path):
    env = {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "keel.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://keel.example.com",
        "KEEL_CHECKPOINT_KEY": secrets.token_urlsafe(32),
    }
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_deploy_check_fails_with_a_weak_secret_key(tmp_path):
    env = {"DEBUG": "false", "SECRET_KEY": "short", "ALLOWED_HOSTS": "keel.example.com"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr + result.stdout


def test_a_development_secret_key_is_generated_once_into_var(tmp_path):
    manage("check", env={}, tmp_path=tmp_path)
    first = (tmp_path / "secret_key").read_text()
    manage("check", env={}, tmp_path=tmp_path)
    assert (tmp_path / "secret_key").read_text() == first
    assert len(first) >= 50
    assert oct((tmp_path / "secret_key").stat().st_mode)[-3:] == "600"


def test_the_default_database_is_an_sqlite_file_in_wal_mode(tmp_path):
    result = manage(
        "shell",
        "-c",
        "from django.db import connection; c = connection.cursor(); c.execute('PRAGMA journal_mode');"
        "print(connection.vendor, c.fetchone()[0], connection.settings_dict['NAME'])",
        env={},
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    vendor, journal, name = result.stdout.split()[-3:]
    assert (vendor, journal) == ("sqlite", "wal")
    assert name == str(tmp_path / "keel.sqlite3")

"""Where a named credential's value may come from, and keeping it out of records.

A credential maps to an environment variable that the operator allow-lists
(``KEEL_CREDENTIAL_ENV_ALLOWLIST``: names, or ``PREFIX_*`` patterns), or to a
file in the operator's ``KEEL_CREDENTIAL_FILE_DIR``. Whatever the list says,
Keel's own configuration can never be named: every name Django has as a
setting, and the names and prefixes below. The rules are checked when a
credential is saved and again each time its value is read, so a row stored
before a rule tightened (or written around the form) is refused at call time.
"""

import fnmatch
import re
from pathlib import Path

from django.conf import settings

ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Keel's and its libraries' own configuration, and the usual homes of
# infrastructure secrets: never a credential, even when allow-listed.
DENIED_PREFIXES = ("KEEL_", "DJANGO_", "CELERY_", "DATABASE_", "POSTGRES", "PG", "REDIS_", "EMAIL_", "AWS_",
                   "GOOGLE_", "AZURE_", "SENTRY_", "SECURE_", "SESSION_", "CSRF_", "OTEL_", "PROMETHEUS_")  # fmt: skip
DENIED_NAMES = frozenset({"SECRET_KEY", "DATABASE_URL", "ALLOWED_HOSTS", "DEBUG", "PATH", "HOME", "PYTHONPATH"})
# Shorter values are refused: scrubbing a two-letter value from recordings would
# mangle them, and no real key or signing secret is that short.
MIN_VALUE_LENGTH = 8


class CredentialError(Exception):
    """A credential that cannot be used: named where it may not point, or no value."""


def env_name_problem(name: str) -> str | None:
    """Why ``name`` may not be a credential's environment variable, or None."""
    if not ENV_NAME.match(name or ""):
        return "Name an environment variable (capitals, digits, underscores), never the secret itself."
    if name in DENIED_NAMES or name.startswith(DENIED_PREFIXES) or hasattr(settings, name):
        return f"{name} is part of Keel's own configuration and can never be a credential."
    if not any(fnmatch.fnmatchcase(name, pattern) for pattern in settings.KEEL_CREDENTIAL_ENV_ALLOWLIST):
        return f"{name} is not in the operator's KEEL_CREDENTIAL_ENV_ALLOWLIST."
    return None


def file_name_problem(name: str) -> str | None:
    """Why ``name`` may not be a credential's file, or None."""
    if not settings.KEEL_CREDENTIAL_FILE_DIR:
        return "The operator has set no KEEL_CREDENTIAL_FILE_DIR; name an environment variable instead."
    if not FILE_NAME.match(name or "") or name in (".", ".."):
        return "Name a file in the operator's credential directory (letters, digits, . _ -; no folders)."
    return None


def read_env(name: str) -> str:
    import os

    problem = env_name_problem(name)
    if problem:
        raise CredentialError(problem)
    return _checked(os.environ.get(name, ""), f"the environment variable {name}")


def read_file(name: str) -> str:
    problem = file_name_problem(name)
    if problem:
        raise CredentialError(problem)
    folder = Path(settings.KEEL_CREDENTIAL_FILE_DIR).resolve()
    path = (folder / name).resolve()
    if path.parent != folder:  # a symlink pointing out of the folder
        raise CredentialError(f"The credential file {name} is not inside the credential directory.")
    try:
        value = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        value = ""
    return _checked(value, f"the credential file {name}")


def _checked(value: str, where: str) -> str:
    if not value:
        raise CredentialError(f"{where[0].upper()}{where[1:]} is not set.")
    if len(value) < MIN_VALUE_LENGTH:
        raise CredentialError(f"The value of {where} is shorter than {MIN_VALUE_LENGTH} characters.")
    return value


REDACTED = "[redacted]"


def scrub(value, secrets):
    """``value`` (a string, or a JSON document of dicts, lists and scalars)
    with every occurrence of each secret replaced by ``[redacted]``: what
    servers, proxies or models echo never reaches a recording or a log."""
    secrets = [s for s in secrets if s]
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {scrub(key, secrets): scrub(item, secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(item, secrets) for item in value)
    return value

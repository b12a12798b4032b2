"""Keel settings. Everything that differs between installs comes from the
environment through ``config.env``; the defaults give a working local install
on an embedded SQLite database with no other server.
"""

import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path

from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_choice, env_database, env_int, env_list, env_networks, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("KEEL_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", True)

# Recorded in every release snapshot; keep equal to pyproject.toml's version.
KEEL_VERSION = "0.1.0"


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is false.")
    # A development key, generated once and kept in var/ so sessions survive restarts.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is false (comma-separated).")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "simple_history",
    "guardian",
    "audit",
    "governance",
    "pipelines",
    "reviews",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "audit.middleware.AuditActorMiddleware",
    "config.security.SecurityMiddleware",
    # A view's database, broker or cache outage answers 503 with Retry-After (config/outages.py).
    "config.outages.OutageMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into a 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Databases: an SQLite file by default, PostgreSQL through DATABASE_URL.
# SQLite runs in WAL mode with immediate transactions so that the web process
# and a worker process can share the file: a writer takes the lock when its
# transaction begins instead of failing half-way on an upgrade.
_SQLITE_DEFAULT = {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": VAR_DIR / "keel.sqlite3",
}
DATABASES = {"default": env_database("DATABASE_URL", _SQLITE_DEFAULT)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            # secure_delete: what an erasure or retention removes is overwritten
            # with zeros in the file, not left in free space for a disk reader.
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON;"
            ),
        }
    )
    # A file, not memory, so that a worker process started by a test shares it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-keel.sqlite3")}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
    # Django's stock backend checks a kept connection (SELECT 1) before its first
    # query of each request or task, and replaces one the server has ended.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Prepared statements: a statement run a few times on a connection is
    # parsed and planned once (psycopg prepares it, which needs server-side
    # binding). Planning was most of the database's CPU on the hot paths: the
    # API's token and deployment reads spent 0.35 and 0.45 ms each planning,
    # against 0.05 executing. Off (false) behind a PgBouncer older than 1.21
    # in transaction pooling mode, which cannot keep prepared statements.
    if env_bool("DATABASE_PREPARED_STATEMENTS", True):
        DATABASES["default"].setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=5)
    # DATABASE_POOL_MAX_SIZE > 0: a connection pool per process (psycopg_pool)
    # instead of a connection kept per thread. A worker running model calls
    # on many threads then holds a connection only while it commits: the
    # engine hands it back for the length of every outside call.
    # (CONN_HEALTH_CHECKS has the pool check a connection before lending it.)
    if _pool_max := env_int("DATABASE_POOL_MAX_SIZE", 0, minimum=0):
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps the connections, Django must not
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": _pool_max, "timeout": 30}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out sign-in before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    # Django's model backend, refusing service accounts (governance/accounts.py).
    "governance.backends.PersonBackend",
    "guardian.backends.ObjectPermissionBackend",
]
# Keel has no anonymous access to anything, so guardian needs no anonymous user.
ANONYMOUS_USER_NAME = None
GUARDIAN_RAISE_403 = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Keel's own revert asks for a reason and restores a pipeline's steps with it.
SIMPLE_HISTORY_REVERT_DISABLED = True
SIMPLE_HISTORY_HISTORY_CHANGE_REASON_USE_TEXT_FIELD = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
# Dates and times read the same on every page (config/formats/): local time with its zone.
FORMAT_MODULE_PATH = ["config.formats"]

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

LOGIN_URL = "admin:login"

# Security. Production (DEBUG false) gets secure cookies, HSTS and an HTTPS
# redirect; behind a TLS-terminating proxy set SECURE_PROXY_SSL_HEADER=true.
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Sessions end 12 hours after sign-in; staff sessions after 30 idle minutes
# too (config.security.SecurityMiddleware).
SESSION_COOKIE_AGE = 12 * 60 * 60
KEEL_STAFF_IDLE_SECONDS = env_int("KEEL_STAFF_IDLE_SECONDS", 30 * 60, minimum=60)
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# Served on every response; Django's admin runs under it without inline scripts.
KEEL_CONTENT_SECURITY_POLICY = env_str(
    "KEEL_CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
)
# Sign-in throttling (django-axes): a username is locked out for this many
# minutes after this many failures from one address. The address is the
# client's only through a proxy listed in KEEL_TRUSTED_PROXIES.
KEEL_TRUSTED_PROXIES = env_list("KEEL_TRUSTED_PROXIES")
AXES_FAILURE_LIMIT = env_int("KEEL_SIGNIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("KEEL_SIGNIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "config.security.client_ip"
AXES_USERNAME_FORM_FIELD = "username"
# TOTP two-factor sign-in (config/two_factor.py): optional for staff, required
# for governance leads, when on.
KEEL_TWO_FACTOR = env_bool("KEEL_TWO_FACTOR", False)
OTP_TOTP_ISSUER = "Keel"
# A device's secret key and QR code are never shown in the admin (a secret never enters a page).
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    if env_bool("SECURE_PROXY_SSL_HEADER", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Celery. With no broker configured, kombu's filesystem transport under var/
# lets a local worker run background work with no server at all.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
# The longest a task may run, and the longest countdown any task is given; the
# broker's visibility timeout must exceed both, or Redis redelivers a task that
# is still running.
KEEL_TASK_TIME_LIMIT = env_int("KEEL_TASK_TIME_LIMIT", 15 * 60, minimum=10)
KEEL_MAX_COUNTDOWN = 60 * 60
# A worker renews its lease on a run after every step; a run whose lease has
# expired (its worker died) is taken back by the recovery beat task.
KEEL_RUN_LEASE_SECONDS = env_int("KEEL_RUN_LEASE_SECONDS", 300, minimum=1)
# Claims of one run by a worker (a crash, a lapsed lease or an unexpected error
# each cost one); a run claimed this often fails instead of being tried again.
KEEL_RUN_MAX_ATTEMPTS = env_int("KEEL_RUN_MAX_ATTEMPTS", 5, minimum=1)
# The largest model reply read; a longer one is an invalid_response.
KEEL_MODEL_REPLY_MAX_BYTES = env_int("KEEL_MODEL_REPLY_MAX_BYTES", 1024 * 1024, minimum=1024)
# A queued run whose message the broker does not hold (its send failed, or a
# broker restart lost it) is sent again once it is this old (docs/outages.md).
KEEL_RUN_RESEND_AFTER_SECONDS = env_int("KEEL_RUN_RESEND_AFTER_SECONDS", 10, minimum=1)
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {
    "visibility_timeout": KEEL_TASK_TIME_LIMIT + KEEL_MAX_COUNTDOWN + 30 * 60,
}


def filesystem_broker_options(var_dir: Path) -> dict:
    """kombu's filesystem transport: one folder of message files under var/."""
    queue_dir = var_dir / "celery" / "queue"
    processed_dir = var_dir / "celery" / "processed"
    control_dir = var_dir / "celery" / "control"
    for folder in (queue_dir, processed_dir, control_dir):
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "control_folder": str(control_dir),
        "data_folder_in": str(queue_dir),
        "data_folder_out": str(queue_dir),
        "processed_folder": str(processed_dir),
        "store_processed": False,
    }


if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS.update(filesystem_broker_options(VAR_DIR))
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND")
CELERY_TASK_IGNORE_RESULT = CELERY_RESULT_BACKEND is None
CELERY_RESULT_EXPIRES = timedelta(days=1)
# Acknowledge early by default; a task that is safe to run twice opts into
# acks_late (and reject_on_worker_lost) itself.
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes the database connection before and after every
# task unless told to reuse it (it reads CELERY_DB_REUSE_MAX); each run would
# then pay a new PostgreSQL connection. Reused for this many tasks instead;
# run_execute_task drops a broken or over-age (DATABASE_CONN_MAX_AGE) one
# first, as Django does per request, so the count need not be small: a new
# server process also plans its first queries against cold catalog caches.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000, minimum=0)
CELERY_TASK_TIME_LIMIT = KEEL_TASK_TIME_LIMIT
CELERY_TASK_SOFT_TIME_LIMIT = KEEL_TASK_TIME_LIMIT - 5
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "audit-verify-nightly": {"task": "audit.verify_chain", "schedule": crontab(hour=3, minute=17)},
    # Runs whose worker died (lease expired) go back on the queue within a minute.
    "runs-recover": {"task": "pipelines.recover_runs", "schedule": 60.0},
    # Queued runs whose message the broker does not hold are sent again within seconds.
    "runs-resend": {"task": "pipelines.resend_runs", "schedule": 5.0},
    # A signed checkpoint of the chain head outside the database (audit/checkpoints.py).
    "audit-checkpoint": {"task": "audit.write_checkpoint", "schedule": 300.0},
    # Run data past its workspace's retention period is redacted (pipelines/runs/redaction.py).
    "retention-apply": {"task": "pipelines.apply_retention", "schedule": crontab(hour=2, minute=41)},
    # A canary whose failure or rejection rate crosses its change policy's limit rolls back.
    "canaries-watch": {"task": "pipelines.watch_canaries", "schedule": 60.0},
}
# Reviews: overdue reviews escalate within five minutes of their deadline; each
# pipeline's passed outputs of the last day get a random QA sample (seed recorded).
CELERY_BEAT_SCHEDULE |= {
    "reviews-escalate": {"task": "reviews.escalate_overdue", "schedule": 300.0},
    "reviews-sample": {"task": "reviews.sample_periodic", "schedule": crontab(hour=4, minute=5)},
    # Reviews: approvals whose undo window closed and whose own task was lost.
    "reviews-finalize-approvals": {"task": "reviews.finalize_approvals", "schedule": 15.0},
}
# How long opening a review keeps it for one reviewer, and the daily sample's size per pipeline (0: none).
KEEL_REVIEW_CLAIM_SECONDS = env_int("KEEL_REVIEW_CLAIM_SECONDS", 15 * 60, minimum=30)
KEEL_REVIEW_SAMPLE_SIZE = env_int("KEEL_REVIEW_SAMPLE_SIZE", 5, minimum=0)
# The last resort: run tasks inline in the caller. A notice is logged at start.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True

LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
# console (the default, for people) or json: one object per line with the
# request, user, workspace, pipeline, run, step and task in force (docs/operations.md).
LOG_FORMAT = env_choice("LOG_FORMAT", "console", ("console", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        # UTC times; CR/LF in a message escaped, so logged values cannot forge lines.
        "plain": {
            "()": "config.logformat.SingleLineFormatter",
            "format": "%(asctime)sZ %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "config.logformat.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "plain"}
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Audit chain checkpoints: signed with this key, written to this directory
# (keep it outside the database's backups' reach: another disk or host mount).
KEEL_CHECKPOINT_KEY = env_str("KEEL_CHECKPOINT_KEY")
KEEL_CHECKPOINT_DIR = Path(env_str("KEEL_CHECKPOINT_DIR", str(VAR_DIR / "checkpoints")))

# Data-subject requests are recorded under an HMAC-SHA256 of the identifier
# keyed with this (empty: a key derived from SECRET_KEY with salted_hmac). Set
# it, and keep it, where SECRET_KEY may be rotated: earlier requests are found
# again only under the same key.
KEEL_SUBJECT_KEY = env_str("KEEL_SUBJECT_KEY", "")

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "keel@localhost")

# E-mail delivery (the deliver step's email channel, pipelines/delivery/email.py): sent through
# this backend, Django's SMTP backend keeping the server's replies, to the EMAIL_* server.
KEEL_EMAIL_BACKEND = env_str("KEEL_EMAIL_BACKEND", "pipelines.delivery.smtp.EmailBackend")
KEEL_EMAIL_TIMEOUT_SECONDS = env_int("KEEL_EMAIL_TIMEOUT_SECONDS", 30, minimum=1)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")  # a secret: from the environment only
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)

# The integration surface: API, cache, throttling, health, documents.
# The cache holds throttle counters: Redis (KEEL_CACHE_URL=redis://...) so that
# every web process counts against the same limit; per process otherwise.
KEEL_CACHE_URL = env_str("KEEL_CACHE_URL")
if KEEL_CACHE_URL and KEEL_CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": KEEL_CACHE_URL}}
elif KEEL_CACHE_URL:
    raise ImproperlyConfigured("KEEL_CACHE_URL must be a redis:// or rediss:// URL (or unset for a local cache).")
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "keel"}}
# Requests per token per minute; a token over it gets 429 with Retry-After.
KEEL_API_RATE_PER_MINUTE = env_int("KEEL_API_RATE_PER_MINUTE", 600, minimum=1)
# The largest uploaded document, and the largest request body (a document plus its form fields).
KEEL_DOCUMENT_MAX_BYTES = env_int("KEEL_DOCUMENT_MAX_BYTES", 10 * 1024 * 1024, minimum=1)
KEEL_API_MAX_BODY_BYTES = KEEL_DOCUMENT_MAX_BYTES + 256 * 1024
# A PDF's text is extracted on a worker, in a child process under these limits,
# checked before the work: pages, the content streams' decoded bytes summed over
# the pages (shared streams counted per page), and CPU seconds and memory.
KEEL_PDF_MAX_PAGES = env_int("KEEL_PDF_MAX_PAGES", 1000, minimum=1)
KEEL_PDF_MAX_CONTENT_BYTES = env_int("KEEL_PDF_MAX_CONTENT_BYTES", 50 * 1024 * 1024, minimum=1024)
KEEL_PDF_EXTRACT_CPU_SECONDS = env_int("KEEL_PDF_EXTRACT_CPU_SECONDS", 30, minimum=1)
KEEL_PDF_EXTRACT_MEMORY_MB = env_int("KEEL_PDF_EXTRACT_MEMORY_MB", 1024, minimum=64)
# The largest document a step takes (its input as UTF-8 JSON): room for the largest request's
# text and one copy of it that a step derives (a redacted or transformed field). A run whose
# input is larger is refused at its start; a step whose input grew past it fails naming it.
KEEL_STEP_INPUT_MAX_BYTES = env_int("KEEL_STEP_INPUT_MAX_BYTES", 2 * KEEL_API_MAX_BODY_BYTES, minimum=1024)
# What one render of a prompt or transform template may do (pipelines/steps/prompts.py): loop
# iterations, operations (calls, filters, operators), characters written and CPU time.
KEEL_TEMPLATE_MAX_ITERATIONS = env_int("KEEL_TEMPLATE_MAX_ITERATIONS", 10_000, minimum=1)
KEEL_TEMPLATE_MAX_OPERATIONS = env_int("KEEL_TEMPLATE_MAX_OPERATIONS", 50_000, minimum=1)
KEEL_TEMPLATE_MAX_OUTPUT = env_int("KEEL_TEMPLATE_MAX_OUTPUT", KEEL_STEP_INPUT_MAX_BYTES, minimum=1024)
KEEL_TEMPLATE_MAX_MILLISECONDS = env_int("KEEL_TEMPLATE_MAX_MILLISECONDS", 250, minimum=1)
# Django's own limit on a body it reads whole (a JSON body, form fields; not
# uploaded files) is the same one, so that no body under the documented limit
# is refused with Django's 2.5 MiB default (docs/outages.md).
DATA_UPLOAD_MAX_MEMORY_SIZE = KEEL_API_MAX_BODY_BYTES
# What a 503 during a database, broker or cache outage tells the client to wait (Retry-After).
KEEL_OUTAGE_RETRY_AFTER_SECONDS = env_int("KEEL_OUTAGE_RETRY_AFTER_SECONDS", 5, minimum=1)
# A worker or beat heartbeat older than this makes /health/ready answer 503.
KEEL_HEARTBEAT_MAX_AGE_SECONDS = env_int("KEEL_HEARTBEAT_MAX_AGE_SECONDS", 180, minimum=10)

# Credentials (docs/credentials-and-egress.md). A workspace's named credential
# maps to an environment variable on this list (names, or PREFIX_* patterns),
# or to a file in KEEL_CREDENTIAL_FILE_DIR; Keel's own settings never qualify.
KEEL_CREDENTIAL_ENV_ALLOWLIST = env_list("KEEL_CREDENTIAL_ENV_ALLOWLIST")
KEEL_CREDENTIAL_FILE_DIR = env_str("KEEL_CREDENTIAL_FILE_DIR")
# Egress: model and webhook calls go only to public addresses of hosts their
# workspace allows; these CIDRs (e.g. 127.0.0.1/32, 10.0.0.0/8) are allowed too.
KEEL_EGRESS_ALLOW_PRIVATE = env_networks("KEEL_EGRESS_ALLOW_PRIVATE")
# The longest an evaluation of a release may run on a worker (its task's hard limit).
KEEL_EVALUATION_TIME_LIMIT = env_int("KEEL_EVALUATION_TIME_LIMIT", 30 * 60, minimum=10)
# A load balancer probes over plain HTTP: the health pages are not redirected to HTTPS.
SECURE_REDIRECT_EXEMPT = [r"^health/"]
CELERY_BEAT_SCHEDULE["heartbeat"] = {"task": "pipelines.heartbeat", "schedule": 30.0}
# Schedules kept in the database and edited in the admin, beside the fixed ones above.
CELERY_BEAT_SCHEDULER = "pipelines.integration.beat:KeelScheduler"
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["pipelines.integration.api.authentication.ServiceTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["pipelines.integration.api.throttling.TokenRateThrottle"],
    "DEFAULT_PARSER_CLASSES": ["pipelines.integration.api.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "pipelines.integration.api.errors.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Keel API",
    "DESCRIPTION": "Start pipeline runs and read their results. Authenticate with `Authorization: Bearer <token>`.",
    "VERSION": KEEL_VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "pipelines.models.runs.Run.Status",
        "StepRunStatusEnum": "pipelines.models.runs.StepRun.Status",
        "DeliveryStatusEnum": "pipelines.models.deliveries.Delivery.Status",
    },
}

# Operations: metrics, structured logs and traces (config/observability/, docs/operations.md).
INSTALLED_APPS += ["config.observability"]
# First, so that every line a request logs carries its request id, and every response its X-Request-ID.
MIDDLEWARE.insert(0, "config.observability.middleware.RequestContextMiddleware")
# GET /metrics answers a scraper that sends "Authorization: Bearer <KEEL_METRICS_TOKEN>" or calls
# from one of these networks (CIDRs, the client address as config.security.client_ip finds it);
# with neither set it is off (404).
KEEL_METRICS_TOKEN = env_str("KEEL_METRICS_TOKEN")
KEEL_METRICS_ALLOWED_NETWORKS = env_networks("KEEL_METRICS_ALLOWED_NETWORKS")
# Counters and histograms of every web and worker process, one file each, added up at each
# scrape: the web server and the workers of one host share it; emptied of dead processes' files
# when a web server or worker starts (config/observability/multiproc.py). prometheus_client reads
# PROMETHEUS_MULTIPROC_DIR when first imported, which is after the settings.
KEEL_METRICS_DIR = Path(env_str("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "metrics")))
KEEL_METRICS_DIR.mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(KEEL_METRICS_DIR)
# Traces are sent only when an OTLP endpoint is set (the exporter reads the OTEL_* variables itself).
KEEL_TRACING = env_str("OTEL_EXPORTER_OTLP_ENDPOINT") is not None
OTEL_SERVICE_NAME = env_str("OTEL_SERVICE_NAME", "keel")

logging.getLogger(__name__).debug("Keel settings loaded (DEBUG=%s)", DEBUG)

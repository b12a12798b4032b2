"""Request-level security: the client's address (only through a trusted
proxy), session lifetimes, a content security policy, and a log of failed
sign-ins and refused access that user-supplied text cannot forge and that
names people by id or keyed hash, never by username.
"""

import logging
import time
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.contrib.auth.views import redirect_to_login
from django.dispatch import receiver
from django.urls import reverse
from django.utils.crypto import salted_hmac

from config.logformat import SingleLineFormatter, one_line  # noqa: F401 - SingleLineFormatter named in LOGGING
from config.two_factor import two_factor_exempt, two_factor_pending

logger = logging.getLogger("keel.security")

SIGNED_IN_AT = "keel_signed_in_at"


def client_ip(request) -> str:
    """REMOTE_ADDR, unless it is one of KEEL_TRUSTED_PROXIES: then the nearest
    X-Forwarded-For entry that is not a trusted proxy. An address a client
    writes into the header itself is never believed past an untrusted hop."""
    remote = request.META.get("REMOTE_ADDR", "")
    trusted = set(settings.KEEL_TRUSTED_PROXIES)
    if remote not in trusted:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop
    return remote


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@receiver(user_logged_in, dispatch_uid="keel_stamp_sign_in")
def stamp_sign_in(sender, request=None, user=None, **kwargs) -> None:
    # The 12-hour limit counts from here, however active the session is.
    if request is not None and hasattr(request, "session"):
        request.session[SIGNED_IN_AT] = int(time.time())


def username_ref(username: str) -> str:
    """A username as a log line may name it: a keyed hash (HMAC of SECRET_KEY),
    the same for every failure against one name, so repeated attempts are
    seen, but not the name itself (personal data, and often a password typed
    into the wrong field)."""
    return salted_hmac("keel.security.username", username or "").hexdigest()[:16]


@receiver(user_login_failed, dispatch_uid="keel_log_login_failed")
def log_login_failed(sender, credentials, request=None, **kwargs) -> None:
    logger.warning(
        "sign-in failed: user_ref=%s address=%s at=%s",
        username_ref(credentials.get("username", "")),
        one_line(client_ip(request)) if request is not None else "-",
        _utc_now(),
    )


class SecurityMiddleware:
    """Session lifetimes, the content security policy and the refused-access log.

    - Every session ends 12 hours after sign-in (SESSION_COOKIE_AGE and a
      stamp checked here, so activity cannot stretch it); a staff session
      also ends after 30 minutes without a request.
    - A Content-Security-Policy on every response that has none.
    - With KEEL_TWO_FACTOR on, a staff session that still owes its second
      factor reaches only the two-factor page (config/two_factor.py).
    - Every 401/403 is logged with the user, the client address and UTC time.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            signed_in_at = request.session.setdefault(SIGNED_IN_AT, int(time.time()))
            if time.time() - signed_in_at > settings.SESSION_COOKIE_AGE:
                logout(request)
            elif user.is_staff:
                request.session.set_expiry(settings.KEEL_STAFF_IDLE_SECONDS)
            if two_factor_pending(request) and not two_factor_exempt(request.path):
                return redirect_to_login(request.get_full_path(), reverse("two-factor"))
        response = self.get_response(request)
        if settings.KEEL_CONTENT_SECURITY_POLICY:
            response.headers.setdefault("Content-Security-Policy", settings.KEEL_CONTENT_SECURITY_POLICY)
        if response.status_code in (401, 403):
            logger.warning(
                "access refused: user=%s address=%s method=%s path=%s status=%s at=%s",
                user.pk if user is not None and user.is_authenticated else "anonymous",  # an id, never a name
                one_line(client_ip(request)),
                request.method,
                one_line(request.path),
                response.status_code,
                _utc_now(),
            )
        return response

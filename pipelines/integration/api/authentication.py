"""``Authorization: Bearer keel_...``: a service token authenticates as its user,
and the request's audit context names the token and its creator."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from audit.context import Via, act_through_token
from pipelines.integration.tokens import token_authenticate


class ServiceTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"bearer":
            return None  # no credentials: the permission check answers 401
        if len(parts) != 2:
            raise AuthenticationFailed("The Authorization header must read 'Bearer <token>'.")
        try:
            plain = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("The token is not valid.") from None
        token = token_authenticate(plain)
        if token is None:
            # One answer for unknown, revoked and inactive: nothing to learn by probing.
            raise AuthenticationFailed("The token is not valid or has been revoked.")
        # Every event this request records names the token and the person who created it.
        via = Via(token_id=token.pk, prefix=token.prefix, created_by_id=token.created_by_id,
                  created_by=token.created_by_name)  # fmt: skip
        act_through_token(user=token.user, via=via)
        return token.user, token

    def authenticate_header(self, request) -> str:
        # Naming the scheme makes DRF answer 401 (not 403) to a request without credentials.
        return 'Bearer realm="keel"'


class ServiceTokenScheme(OpenApiAuthenticationExtension):
    target_class = ServiceTokenAuthentication
    name = "serviceToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A Keel service token: `keel_<prefix>_<secret>`."}

from audit.context import acting_as, request_scope


class AuditActorMiddleware:
    """Names the signed-in user as the actor of whatever a request changes.

    The request runs in its own audit scope: an API token's authentication
    (inside the view) names the token's user and the token there, and the
    scope undoes it when the request ends."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with request_scope():
            user = getattr(request, "user", None)
            if user is None or not user.is_authenticated:
                return self.get_response(request)
            with acting_as(user):
                return self.get_response(request)

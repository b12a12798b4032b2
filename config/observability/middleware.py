"""One request's log context: its request id (the client's X-Request-ID when
well formed, else a new one), returned in the response's X-Request-ID header."""

from config.logcontext import log_scope, request_id_from


class RequestContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_from(request.headers.get("X-Request-ID"))
        request.request_id = request_id
        with log_scope(request_id=request_id):
            response = self.get_response(request)
        response.headers["X-Request-ID"] = request_id
        return response

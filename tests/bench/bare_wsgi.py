"""The bare WSGI app the API's figures are set against: no Django, one short
answer to every request, under the same gunicorn as Keel."""


def application(environ, start_response):
    body = b'{"status": "ok"}'
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]

"""One error handler for the whole app: each blueprint's errors in its own protocol's format.

2030.5 paths answer an `<Error>` document (application/sep+xml); admin paths answer JSON
problem details (RFC 9457). No exception escapes as an HTML page or a traceback.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException

from server.sep2 import codec
from server.sep2.codec import DecodeError
from server.sep2.models import MEDIA_TYPE, Error
from server.services.errors import ServiceError

ADMIN_PREFIX = "/admin/"
log = logging.getLogger("derflex.api")


def sep2_error(status: int, reason_code: int, message: str = "", **headers: str) -> Response:
    # maxRetryDuration only where retrying later makes sense.
    body = codec.render(Error(reason_code=reason_code))
    resp = Response(body, status=status, content_type=MEDIA_TYPE)
    if message:
        # The 2030.5 Error has no text element; the reason travels in a header for humans.
        resp.headers["X-Error-Detail"] = message.replace("\n", " ")[:200]
    resp.headers.update(headers)
    return resp


def admin_error(status: int, title: str, detail: str = "", **headers: str) -> Response:
    problem = {"type": "about:blank", "title": title, "status": status}
    if detail:
        problem["detail"] = detail
    resp = Response(json.dumps(problem), status=status, mimetype="application/problem+json")
    resp.headers.update(headers)
    return resp


def _is_admin() -> bool:
    return request.path.startswith(ADMIN_PREFIX)


def _reason_for_status(status: int) -> int:
    if status == 429:
        return 4
    if status == 413:
        return 2
    return 0 if status in (400, 405, 411, 415) else 1


def register(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service(exc: ServiceError) -> Response:
        headers = {"Location": exc.location} if exc.location else {}
        if _is_admin():
            return admin_error(exc.status, type(exc).__name__, exc.message, **headers)
        return sep2_error(exc.status, exc.reason_code, exc.message, **headers)

    @app.errorhandler(DecodeError)
    def _decode(exc: DecodeError) -> Response:
        if _is_admin():
            return admin_error(400, "Bad Request", str(exc))
        return sep2_error(400, exc.reason_code, str(exc))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = {k: v for k, v in exc.get_headers() if k.lower() in ("allow", "retry-after")}
        if _is_admin():
            return admin_error(status, exc.name, exc.description or "", **headers)
        return sep2_error(status, _reason_for_status(status), exc.description or "", **headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        if _is_admin():
            return admin_error(500, "Internal Server Error")
        return sep2_error(500, 0)

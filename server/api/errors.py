"""One error handler for the whole app: each blueprint's errors in its own protocol's format.

2030.5 paths answer an `<Error>` document (application/sep+xml); admin paths answer JSON
problem details (RFC 9457). No exception escapes as an HTML page or a traceback.

Whatever reaches a header passes `header_text` first: HTTP/1.1 header values are Latin-1 at
most and gunicorn refuses anything else with a bare 500 HTML page, and an error's detail quotes the
client's input (`'中' is not an integer`). So each header we set is printable ASCII, with other
characters escaped the way Python escapes them (`\\u4e2d`), and never carries CR, LF or NUL.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException

from server.beckn.envelope import nack
from server.beckn.errors import ErrorCode
from server.sep2 import codec
from server.sep2.codec import DecodeError
from server.sep2.models import MEDIA_TYPE, Error
from server.services.errors import ServiceError

ADMIN_PREFIX = "/admin/"
MAX_DETAIL_HEADER = 200
log = logging.getLogger("derflex.api")


def header_text(text: str, limit: int = MAX_DETAIL_HEADER) -> str:
    """`text` as a safe header value: printable ASCII only (other characters escaped as
    `\\xNN`/`\\uNNNN`/`\\UNNNNNNNN`), at most `limit` characters, cut before a broken escape."""
    out: list[str] = []
    size = 0
    for c in text:
        code = ord(c)
        if 32 <= code < 127:
            piece = c
        elif code < 0x100:
            piece = f"\\x{code:02x}"
        elif code < 0x10000:
            piece = f"\\u{code:04x}"
        else:
            piece = f"\\U{code:08x}"
        size += len(piece)
        if size > limit:
            break
        out.append(piece)
    return "".join(out)


def _safe_headers(headers: dict[str, str]) -> dict[str, str]:
    return {name: header_text(value, 2048) for name, value in headers.items()}


def sep2_error(status: int, reason_code: int, message: str = "", **headers: str) -> Response:
    # maxRetryDuration only where retrying later makes sense.
    body = codec.render(Error(reason_code=reason_code))
    resp = Response(body, status=status, content_type=MEDIA_TYPE)
    if message:
        # The 2030.5 Error has no text element; the reason travels in a header for humans.
        resp.headers["X-Error-Detail"] = header_text(message)
    resp.headers.update(_safe_headers(headers))
    return resp


def admin_error(
    status: int, title: str, detail: str = "", *, field: str | None = None, **headers: str
) -> Response:
    problem: dict[str, object] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        problem["detail"] = detail
    if field is not None:  # RFC 9457 extension member: the request field at fault
        problem["field"] = field
    resp = Response(json.dumps(problem), status=status, mimetype="application/problem+json")
    resp.headers.update(_safe_headers(headers))
    return resp


def _is_admin() -> bool:
    return request.path.startswith(ADMIN_PREFIX)


def _reason_for_status(status: int) -> int:
    if status == 429:
        return 4
    if status == 413:
        return 2
    return 0 if status in (400, 405, 411, 415) else 1


def unparsable_request_answer(protocol: str, status: int, reason: str, detail: str = "",
                              path: str = "") -> bytes:
    """The whole HTTP answer to a request gunicorn could not parse (request line, method, header):
    a Beckn NACK on the BPP listener; on the other, admin problem JSON when the request line was
    read and named an admin path, else a 2030.5 `<Error>` (devices are its main clients)."""
    if protocol == "beckn":
        body = json.dumps(nack(ErrorCode.INVALID_REQUEST, header_text(f"{reason}: {detail}"))).encode("ascii")
        ctype = "application/json"
    elif path.startswith(ADMIN_PREFIX):
        problem = {"type": "about:blank", "title": reason, "status": status, "detail": header_text(detail)}
        body, ctype = json.dumps(problem).encode("ascii"), "application/problem+json"
    else:
        body = codec.render(Error(reason_code=_reason_for_status(status)))
        ctype = MEDIA_TYPE
    head = (f"HTTP/1.1 {status} {header_text(reason, 60)}\r\nConnection: close\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n")
    if detail and protocol != "beckn":
        head += f"X-Error-Detail: {header_text(detail)}\r\n"
    return (head + "\r\n").encode("ascii") + body


def answer_unparsable_requests_in(protocol: str) -> None:
    """Make this worker process answer requests gunicorn refuses before the app sees them in
    `protocol`'s format instead of gunicorn's HTML page (it writes them with `util.write_error`,
    whatever the worker class). Called once per worker process, when its app is loaded."""
    import threading

    from gunicorn import util
    from gunicorn.workers.base import Worker

    refusing = threading.local()  # the request being refused, when gunicorn parsed its first line
    handle_error = Worker.handle_error

    def remembering(self: Any, req: Any, client: Any, addr: Any, exc: Exception) -> None:
        refusing.path = getattr(req or getattr(exc, "req", None), "path", None) or ""
        try:
            handle_error(self, req, client, addr, exc)
        finally:
            refusing.path = ""

    def write_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
        path = getattr(refusing, "path", "")
        util.write_nonblock(sock, unparsable_request_answer(protocol, status_int, reason, mesg, path))

    if getattr(Worker.handle_error, "__name__", "") != "remembering":
        Worker.handle_error = remembering  # type: ignore[method-assign]
    util.write_error = write_error


def register(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service(exc: ServiceError) -> Response:
        headers = {"Location": exc.location} if exc.location else {}
        if _is_admin():
            title = getattr(exc, "title", type(exc).__name__)
            field = getattr(exc, "field", None)
            return admin_error(exc.status, title, exc.message, field=field, **headers)
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

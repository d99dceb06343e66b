"""The BPP's HTTP face: `POST /beckn/{action}` for every Beckn action, and the tracking view.

Thin: the raw bytes go to server.services.bpp.pipeline.receive, whose answer is sent as it is (ACK, or a
NACK with 400/401/404); once a request is stored, this process's worker is woken so the callback
leaves at once. Every error of this blueprint — a too large body, a wrong method — is a NACK.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from server.beckn.envelope import nack
from server.beckn.errors import ErrorCode
from server.beckn.signing import SigningKey
from server.services.bpp import pipeline as beckn, actions as beckn_actions
from server.services.bpp import v2pipeline as beckn_v2
from server.services.errors import ServiceError

bp = Blueprint("beckn", __name__, url_prefix="/beckn")


def facade() -> Any:
    return current_app.extensions["derflex.beckn"]


@bp.post("/<string(maxlength=64):action>")
def receive(action: str) -> tuple[Response, int, dict[str, str]]:
    f = facade()
    raw = request.get_data(cache=False)
    answer = beckn.receive(f.db, action, raw, request.headers.get("Authorization"), time.time(), f.provider,
                           f.keys, domains=f.domains)
    if answer.status == 200 and f.worker is not None:
        f.worker.wake()
    return jsonify(answer.body), answer.status, answer.headers


def _our_key() -> Any:
    """Our signing key (v2 Acks are counter-signed), read once per app from the provider's file."""
    key = current_app.extensions.get("derflex.beckn.key")
    if key is None:
        p = facade().provider
        key = SigningKey.from_b64(p.bpp_id, p.key_id, Path(p.key_path).read_text().strip())
        current_app.extensions["derflex.beckn.key"] = key
    return key


@bp.post("/v2/<string(maxlength=64):action>")
def receive_v2(action: str) -> tuple[Response, int, dict[str, str]]:
    """Beckn v2.0.0 LTS: the same pipeline, v2's wire (server.services.bpp.v2pipeline)."""
    f = facade()
    raw = request.get_data(cache=False)
    answer = beckn_v2.receive(f.db, action, raw, request.headers.get("Authorization"), time.time(), f.provider,
                              f.keys, _our_key())
    if answer.status == 200 and f.worker is not None:
        f.worker.wake()
    return jsonify(answer.body), answer.status, answer.headers


@bp.get("/track/<string(maxlength=64):order_id>")
def track(order_id: str) -> Response:
    """The live view a BAP's `on_track` URL points at: the order and where each device stands."""
    f = facade()
    with f.db.transaction() as s:
        return jsonify(beckn_actions.tracking_view(s, order_id, f.provider, int(time.time())))


def register_errors(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response, int, dict[str, str]]:
        status = exc.code or 500
        code = ErrorCode.ACTION_NOT_APPLICABLE if status in (404, 405) else ErrorCode.INVALID_REQUEST
        headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
        return jsonify(nack(code, exc.description or exc.name)), status, headers

    @app.errorhandler(ServiceError)
    def _service(exc: ServiceError) -> tuple[Response, int]:
        return jsonify(nack(ErrorCode.INVALID_REQUEST, exc.message)), exc.status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        current_app.logger.exception("beckn: unhandled error on %s", request.path)
        return jsonify(nack(ErrorCode.BUSINESS_ERROR, "internal error; the request was not stored")), 500

"""The admin API for the outbox (JSON, under /admin/api/v1/outbox): where each fact stands with
each consumer, and dead letters replayed. Same bearer token and problem+json errors as the rest of
the admin API; the rules live in server.services.outbox.

    GET    /outbox                   ?state=pending|delivered|dead&consumer=NAME&start&limit — newest first
    GET    /outbox/stats             per consumer: pending, retrying, delivered, retried, dead
    POST   /outbox/{id}/replay       a dead letter due again now, under a new idempotency key
                                     (404 unknown, 409 not dead)
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from server.api.admin import int_arg, require_token
from server.api.client import now, runtime
from server.services import outbox

bp = Blueprint("admin_outbox", __name__, url_prefix="/admin/api/v1/outbox")
bp.before_request(require_token)


@bp.get("")
def list_deliveries() -> Response:
    start, limit = int_arg("start", 0, 2**31), int_arg("limit", 100, outbox.MAX_PAGE)
    with runtime().db.transaction() as s:
        return jsonify(outbox.list_deliveries(s, state=request.args.get("state"),
                                              consumer=request.args.get("consumer"), start=start, limit=limit))


@bp.get("/stats")
def stats() -> Response:
    with runtime().db.transaction() as s:
        return jsonify(outbox.stats(s))


@bp.post("/<int(max=9223372036854775807):delivery_id>/replay")
def replay(delivery_id: int) -> Response:
    with runtime().db.transaction() as s:
        return jsonify(outbox.replay(s, delivery_id, now()))

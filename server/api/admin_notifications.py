"""The admin API for 2030.5 subscriptions and notifications (JSON, bearer token, problem+json
errors like the rest of the admin API); the rules live in server.services.sep2.notifications.

    GET    /notifications              ?state=pending|delivered|dead&receiver=URL&start&limit — newest first
    GET    /notifications/stats        per receiver: pending, retrying, delivered, retried, dead
    POST   /notifications/{id}/replay  a dead notification due again now (404 unknown, 400 not dead)
    POST   /notifications/replay-dead  every dead notification due again now
    GET    /subscriptions              ?start&limit — every subscription, oldest first
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from server.api.admin import int_arg, require_token
from server.api.client import now_exact, runtime
from server.services.sep2 import notifications

bp = Blueprint("admin_notifications", __name__, url_prefix="/admin/api/v1")
bp.before_request(require_token)


@bp.get("/notifications")
def list_notifications() -> Response:
    start, limit = int_arg("start", 0, 2**31), int_arg("limit", 100, notifications.MAX_PAGE)
    with runtime().db.transaction() as s:
        return jsonify(notifications.list_notifications(s, state=request.args.get("state"),
                                                        receiver=request.args.get("receiver"),
                                                        start=start, limit=limit))


@bp.get("/notifications/stats")
def stats() -> Response:
    with runtime().db.transaction() as s:
        return jsonify(notifications.stats(s))


@bp.post("/notifications/<int(max=9223372036854775807):notification_id>/replay")
def replay(notification_id: int) -> Response:
    with runtime().db.transaction() as s:
        return jsonify({"replayed": notifications.replay(s, notification_id, now_exact())})


@bp.post("/notifications/replay-dead")
def replay_dead() -> Response:
    with runtime().db.transaction() as s:
        return jsonify({"replayed": notifications.replay(s, None, now_exact())})


@bp.get("/subscriptions")
def list_subscriptions() -> Response:
    start, limit = int_arg("start", 0, 2**31), int_arg("limit", 100, notifications.MAX_PAGE)
    with runtime().db.transaction() as s:
        return jsonify(notifications.list_subscriptions(s, start=start, limit=limit))

"""Beckn and the outbox: orders with their BAPs, callbacks sent to BAPs, and dead letters (outbox
deliveries that ran out of retries, 2030.5 notifications) with replay."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, g, redirect, render_template, request, url_for

from server.db import dashboard
from server.services import accounts, outbox
from server.services.sep2 import notifications
from server.ui.context import now, require, ui
from server.ui.paging import page

bp = Blueprint("beckn", __name__)


@bp.get("/beckn")
def beckn() -> str:
    op, cp, dp = page("o", 25), page("c", 25), page("d", 25)
    state = request.args.get("state") or ""
    state = state if state in ("pending", "delivered", "expired", "unanswered") else ""
    with ui().db.transaction() as s:
        ototal, orders = dashboard.orders_page(s, op.start, op.size)
        ctotal, callbacks = dashboard.callbacks_page(s, state or None, cp.start, cp.size)
        dead = outbox.list_deliveries(s, state="dead", start=dp.start, limit=dp.size)
        stats = outbox.stats(s)
        notes = notifications.list_notifications(s, state="dead", start=0, limit=25)
    order_rows = []
    for o, program in orders:
        try:
            devices = len(json.loads(o.order).get("fulfillments") or [])
        except (ValueError, AttributeError):
            devices = 0
        order_rows.append({"id": o.id, "bap": o.bap_id, "program": program, "program_id": o.program_id,
                           "state": o.state, "devices": devices, "updated": o.updated_time})
    return render_template("beckn.html", orders=order_rows, opage=op.of(ototal), callbacks=callbacks,
                           cpage=cp.of(ctotal), state=state, dead=dead["deliveries"], dpage=dp.of(dead["all"]),
                           stats=stats["consumers"], notes=notes)


@bp.post("/outbox/<int(max=9223372036854775807):delivery_id>/replay")
@require("operator")
def replay(delivery_id: int) -> Any:
    with ui().db.transaction() as s:
        view = outbox.replay(s, delivery_id, now())
        accounts.record(s, g.user, "outbox.replay", f"outbox delivery {delivery_id}", {"state": "dead"},
                        {"state": view.get("state"), "idempotency_key": view.get("idempotency_key")}, now())
    return redirect(url_for("beckn.beckn"))


@bp.post("/notifications/<int(max=9223372036854775807):notification_id>/replay")
@require("operator")
def replay_notification(notification_id: int) -> Any:
    with ui().db.transaction() as s:
        done = notifications.replay(s, notification_id, now())
        accounts.record(s, g.user, "notification.replay", f"notification {notification_id}", {"state": "dead"},
                        {"replayed": done}, now())
    return redirect(url_for("beckn.beckn"))

"""Beckn and the outbox: the BAPs' orders (v1.1.0) and contracts (v2.0.0, with their cleared bid) as
`derflex beckn orders` lists them (server.services.bpp.v2contracts.agreements), callbacks sent to
BAPs, and dead letters (outbox deliveries that ran out of retries, 2030.5 notifications) with replay."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, redirect, render_template, request, url_for

from server.db import dashboard
from server.services import accounts, outbox
from server.services.bpp import v2contracts
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
        ototal, _ = dashboard.orders_page(s, 0, 0)
        # newest first, as the CLI lists them; a page is the tail of the first start + size
        agreements = v2contracts.agreements(s, limit=op.start + op.size)[op.start:]
        names = dict(dashboard.program_names(s)) if agreements else {}
        ctotal, callbacks = dashboard.callbacks_page(s, state or None, cp.start, cp.size)
        dead = outbox.list_deliveries(s, state="dead", start=dp.start, limit=dp.size)
        stats = outbox.stats(s)
        notes = notifications.list_notifications(s, state="dead", start=0, limit=25)
    order_rows = [{**a, "program_id": a["program"], "program": names.get(a["program"], f"program {a['program']}")}
                  for a in agreements]
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

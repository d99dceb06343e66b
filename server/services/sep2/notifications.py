"""The operator's view of 2030.5 subscriptions and notifications: who subscribed to what, where
each notification stands (pending, delivered, dead) per receiver, and dead ones replayed.

The admin API (`/admin/api/v1/notifications`, `/admin/api/v1/subscriptions`) and `derflex
notifications` call these; what is sent is server.jobs.notify's business."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from server.db import sub as store
from server.services import clock
from server.services.errors import Invalid, NotFound, check_text

MAX_PAGE = 1000


def _state(state: str | None) -> str | None:
    if state in (None, ""):
        return None
    if state not in store.STATES:
        raise Invalid(f"state must be one of {', '.join(store.STATES)}, not {str(state)[:20]!r}")
    return state


def notification_view(row: store.Notification) -> dict[str, Any]:
    return {
        "id": row.id, "subscription_id": row.subscription_id, "key": row.key, "receiver": row.receiver,
        "uri": row.uri, "state": row.state, "attempts": row.attempts, "replays": row.replays,
        "next_attempt": clock.iso(row.next_attempt_at) if row.state == "pending" else None,
        "last_error": row.last_error, "created": clock.iso(row.created_time),
        "delivered": clock.iso(row.delivered_time), "bytes": len(row.body.encode("utf-8")),
    }


def list_notifications(session: Session, *, state: str | None = None, receiver: str | None = None,
                       start: int = 0, limit: int = 100) -> dict[str, Any]:
    """A page of notifications, newest first, filtered by state and receiver (scheme://host:port)."""
    total, rows = store.page(session, state=_state(state), receiver=check_text(receiver, "receiver", 255) or None,
                             start=max(0, start), limit=max(0, min(limit, MAX_PAGE)))
    return {"all": total, "notifications": [notification_view(r) for r in rows]}


def stats(session: Session) -> dict[str, Any]:
    """Per receiver: pending (of which retrying: failed before), delivered (of which retried:
    needed more than one attempt), dead."""
    out: dict[str, dict[str, int]] = {}
    for receiver, state, tried, n in store.counts(session):
        c = out.setdefault(receiver, {"pending": 0, "retrying": 0, "delivered": 0, "retried": 0, "dead": 0})
        c[state] = c.get(state, 0) + n
        if state == "pending" and tried >= 1:
            c["retrying"] += n
        if state == "delivered" and tried >= 2:
            c["retried"] += n
    totals = {k: sum(c[k] for c in out.values()) for k in ("pending", "retrying", "delivered", "retried", "dead")}
    return {"receivers": [{"receiver": r, **out[r]} for r in sorted(out)], "total": totals}


def replay(session: Session, notification_id: int | None, now: float) -> list[int]:
    """A dead notification (or, with None, every dead one) pending again now; their ids."""
    if notification_id is None:
        return store.replay(session, None, now)
    row = session.get(store.Notification, notification_id)
    if row is None:
        raise NotFound(f"no notification {notification_id}")
    if row.state != "dead":
        raise Invalid(f"notification {notification_id} is {row.state}: only dead ones are replayed")
    return store.replay(session, [notification_id], now)


def subscription_view(row: store.Subscription) -> dict[str, Any]:
    return {
        "id": row.id, "device_id": row.device_id, "subscriber_lfdi": row.subscriber_lfdi,
        "resource": row.resource, "target": row.target, "notification_uri": row.notification_uri,
        "limit": row.limit, "created": clock.iso(row.created_time), "updated": clock.iso(row.updated_time),
    }


def list_subscriptions(session: Session, *, start: int = 0, limit: int = 100) -> dict[str, Any]:
    total, rows = store.all_subscriptions(session, start=max(0, start), limit=max(0, min(limit, MAX_PAGE)))
    return {"all": total, "subscriptions": [subscription_view(r) for r in rows]}

"""Queued 2030.5 notifications as rows: the Notification document around a resource, and the
"resource deleted" notices that end subscriptions (kept apart from server.services.sep2.notify,
which reads resources through the function sets, so that those can call this without a cycle)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from server.db import sub as store
from server.sep2 import uris
from server.sep2.sub import STATUS_DELETED, Notification, render_notification


def document(sub: Any, status: int, resource: Any | None) -> str:
    """The Notification for subscription `sub` (a row) with `status` and the resource (or None)."""
    note = Notification(subscribed_resource=sub.resource, status=status,
                        subscription_uri=(sub.base_uri or "") + uris.href(uris.SUB, edev_id=sub.device_id, sub_id=sub.id))
    return render_notification(note, resource).decode("utf-8")


def row(sub: Any, key: str, body: str, now: float) -> dict[str, Any]:
    """A pending notification row for `sub`, due now."""
    return {"subscription_id": sub.id, "key": key[:100], "receiver": sub.receiver, "uri": sub.notification_uri,
            "body": body, "state": "pending", "attempts": 0, "next_attempt_at": now, "created_time": now,
            "replays": 0}


def resources_deleted(session: Session, device_id: int, now: float) -> int:
    """The EndDevice `device_id` is being removed: every subscription to it or under it gets status
    4 (resource deleted) and ends. Call before the removal (its rows cascade away with it)."""
    sub = store.Subscription
    subs = session.scalars(select(sub).where(or_(sub.device_id == device_id, sub.target_device_id == device_id))).all()
    rows = [row(s, "deleted", document(s, STATUS_DELETED, None), now) for s in subs]
    n = store.queue(session, rows)
    for s in subs:
        session.delete(s)
    session.flush()
    return n

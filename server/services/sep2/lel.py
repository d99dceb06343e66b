"""Log events (`/edev/{id}/lel`): devices post what happened to them; they and operators read it.

Rules: a client posts only to the LogEventList of an EndDevice it may see (its own; an
aggregator's also those it manages); any other is not found (404), as everywhere. Every value is
checked by its schema type while parsing (400, reasonCode 1, nothing stored); `details` must be
printable text. The server keeps at most server.db.log_events.MAX_PER_DEVICE per device and
drops the oldest (by arrival) beyond that. The list is newest first by the device's
createdDateTime, then logEventID.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from server.db import log_events as store
from server.db import repo
from server.scope import Scope
from server.sep2.log import LogEvent, LogEventList
from server.sep2.paging import Page
from server.services.errors import NotFound, check_text
from server.services.sep2.edev import visible_device
from server.services.sep2.mappers import lel as mapper


def log_event_list(db: repo.Reader, scope: Scope, edev_id: int, page: Page, poll_rate: int | None) -> LogEventList:
    visible_device(db, scope, edev_id)
    total, rows = store.log_events_of_device(db, edev_id, page.start, page.limit)
    return mapper.log_event_list(edev_id, rows, total, poll_rate)


def log_event(db: repo.Reader, scope: Scope, edev_id: int, log_event_id: int) -> LogEvent:
    visible_device(db, scope, edev_id)
    row = store.log_event_of_device(db, edev_id, log_event_id)
    if row is None:
        raise NotFound("no such LogEvent (or it was dropped as one of the oldest)")
    return mapper.log_event(edev_id, row)


def post_log_event(session: Session, scope: Scope, edev_id: int, posted: LogEvent, now: int,
                   *, keep: int = store.MAX_PER_DEVICE) -> int:
    """Store a device's LogEvent; returns its id."""
    visible_device(session, scope, edev_id)
    check_text(posted.details, "details", 32)
    row = store.LogEventRow(device_id=edev_id, received_time=now, **mapper.log_event_columns(posted))
    return store.add_log_event(session, row, keep=keep).id


# ------------------------------------------------------------------------------- operator side


def device_log_events(session: Session, device_id: int, start: int = 0, limit: int = 100) -> dict[str, Any]:
    """A device's log events for operators, newest first: {all, log_events: […]}."""
    if repo.get_device(session, Scope.operator(), device_id) is None:
        raise NotFound(f"no EndDevice {device_id}")
    total, rows = store.log_events_of_device(session, device_id, start, limit)
    return {"all": total, "log_events": [mapper.log_event_json(r) for r in rows]}

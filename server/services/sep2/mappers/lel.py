"""Log events (`lel`): LogEvent and LogEventList from the stored rows (server.db.log_events), the
columns a posted LogEvent is stored as, and the operator's JSON view."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from server.sep2 import uris
from server.sep2.log import LogEvent, LogEventList

_FIELDS = ("created_date_time", "details", "extended_data", "function_set", "log_event_code",
           "log_event_id", "log_event_pen", "profile_id")


def log_event_columns(posted: LogEvent) -> dict[str, Any]:
    """The stored columns of a device's posted LogEvent (its href, if any, is ignored)."""
    return {f: getattr(posted, f) for f in _FIELDS}


def log_event(edev_id: int, row: Any) -> LogEvent:
    return LogEvent(href=uris.href(uris.LEL, edev_id=edev_id, lel_id=row.id), **{f: getattr(row, f) for f in _FIELDS})


def log_event_list(edev_id: int, rows: Sequence[Any], all_: int, poll_rate: int | None) -> LogEventList:
    return LogEventList(
        href=uris.href(uris.LEL_LIST, edev_id=edev_id),
        all=all_,
        results=len(rows),
        poll_rate=poll_rate,
        log_events=[log_event(edev_id, r) for r in rows],
    )


def log_event_json(row: Any) -> dict[str, Any]:
    """A log event for operators: the 2030.5 names, plus its id and when it arrived."""
    return {
        "id": row.id,
        "device_id": row.device_id,
        "received_time": row.received_time,
        "createdDateTime": row.created_date_time,
        "details": row.details,
        "extendedData": row.extended_data,
        "functionSet": row.function_set,
        "logEventCode": row.log_event_code,
        "logEventID": row.log_event_id,
        "logEventPEN": row.log_event_pen,
        "profileID": row.profile_id,
    }

"""The operator's 2030.5 registry behind the admin API and the CLI: devices, aggregators, poll rates."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session

from server.db import access, repo
from server.db.models import Device
from server.scope import Scope
from server.services.sep2 import edev
from server.services import outbox
from server.services.errors import Conflict, Invalid, NotFound, check_text

# Resources whose pollRate an operator may change at run time (the function-set names).
POLL_RATE_RESOURCES = ("dcap", "tm", "edev", "rg", "der", "fsa", "derp", "rsps", "mup", "upt")


def device_view(device: Device) -> dict[str, Any]:
    return {
        "id": device.id,
        "lfdi": device.lfdi,
        "sfdi": device.sfdi,
        "label": device.label,
        "enabled": device.enabled,
        "post_rate": device.post_rate,
        "registered_by": device.registered_by,
        "aggregator_lfdi": device.aggregator_lfdi,
        "registered_time": device.registered_time,
        "changed_time": device.changed_time,
        "has_pin": device.pin is not None,
        "connection_point_id": device.connection_point_id,
    }


def list_devices(session: Session, start: int = 0, limit: int = 100) -> dict[str, Any]:
    scope = Scope.operator()
    rows = repo.list_devices(session, scope, start, limit)
    return {"all": repo.count_devices(session, scope), "devices": [device_view(d) for d in rows]}


def register_device(session: Session, body: dict[str, Any], now: int) -> dict[str, Any]:
    lfdi = body.get("lfdi")
    if not isinstance(lfdi, str):
        raise Invalid("'lfdi' (40 hex digits) is required")
    pin = body.get("pin")
    if pin is not None and (isinstance(pin, bool) or not isinstance(pin, int)):
        raise Invalid("'pin' must be an integer such as 111115")
    post_rate = body.get("post_rate")
    if post_rate is not None and (
        isinstance(post_rate, bool) or not isinstance(post_rate, int) or not 1 <= post_rate < 2**32
    ):
        raise Invalid("'post_rate' must be a positive number of seconds")
    aggregator = body.get("aggregator_lfdi")
    label = body.get("label")
    if aggregator is not None:
        aggregator = _named_aggregator(session, aggregator)
    label = check_text(label, "'label'", 100)
    device = edev.register_out_of_band(
        session, lfdi, now, pin=pin, aggregator_lfdi=aggregator, label=label, post_rate=post_rate
    )
    return device_view(device)


class FieldInvalid(Invalid):
    """Invalid, naming the request field at fault (the admin API's problem JSON carries it)."""

    title = "Invalid"

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _named_aggregator(session: Session, value: object) -> str:
    """An aggregator LFDI for a device: only one the operator has named (POST /aggregators).
    An unnamed LFDI would make a device managed by a certificate that has no aggregator scope."""
    if not isinstance(value, str):
        raise FieldInvalid("aggregator_lfdi", "'aggregator_lfdi' must be a string")
    try:
        lfdi = edev.parse_lfdi(value)
    except Invalid as exc:
        raise FieldInvalid("aggregator_lfdi", f"'aggregator_lfdi': {exc.message}") from None
    if not repo.is_aggregator(session, lfdi):
        raise FieldInvalid(
            "aggregator_lfdi", f"'aggregator_lfdi' {lfdi} is not a named aggregator (name it first)"
        )
    return lfdi


def get_device(session: Session, device_id: int) -> dict[str, Any]:
    device = repo.get_device(session, Scope.operator(), device_id)
    if device is None:
        raise NotFound(f"no device {device_id}")
    return device_view(device)


def set_poll_rate(session: Session, resource: str, seconds: Any) -> None:
    if resource not in POLL_RATE_RESOURCES:
        raise Invalid(f"unknown resource {resource!r}; one of {', '.join(POLL_RATE_RESOURCES)}")
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds < 2**32:
        raise Invalid("pollRate must be a positive number of seconds")
    repo.set_poll_rate(session, resource, seconds)
    outbox.record(session, outbox.PollRateChanged(resource), time.time())


def set_post_rate(session: Session, device_id: int, seconds: Any, now: int) -> None:
    device = repo.get_device(session, Scope.operator(), device_id)
    if device is None:
        raise NotFound(f"no device {device_id}")
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds < 2**32:
        raise Invalid("postRate must be a positive number of seconds")
    device.post_rate = seconds
    device.changed_time = now
    outbox.record(session, outbox.DeviceChanged(device_id), now)


def poll_rates(session: Session, default: int) -> dict[str, int]:
    stored = repo.poll_rates(session)
    return {r: stored.get(r, default) for r in POLL_RATE_RESOURCES}


def add_aggregator(session: Session, lfdi: str, name: str, now: int) -> dict[str, Any]:
    """Name (or rename) an aggregator, and register its own EndDevice (its certificate's LFDI)
    unless that LFDI is registered already: the aggregator keeps its subscriptions under it,
    whatever devices they are about (CSIP-AUS: the aggregator's certificate LFDI is its own
    EndDevice, the one with a SubscriptionListLink in its EndDeviceList)."""
    lfdi = edev.parse_lfdi(lfdi)
    repo.add_aggregator(session, lfdi, name, now)
    own = repo.find_device_by_lfdi(session, lfdi)
    if own is None:
        try:
            with session.begin_nested():  # a concurrent naming may register it first
                own = edev.register_out_of_band(session, lfdi, now, label=name[:100])
        except Conflict:
            own = repo.find_device_by_lfdi(session, lfdi)
    assert own is not None
    return {"lfdi": lfdi, "name": name, "device_id": own.id}


def remove_device(session: Session, device_id: int, now: int) -> dict[str, Any]:
    """Remove a device and its 2030.5 data (services.sep2.edev.remove says what goes and what
    refuses it); its view as it was."""
    device = repo.get_device(session, Scope.operator(), device_id)
    if device is None:
        raise NotFound(f"no device {device_id}")
    view = device_view(device)
    edev.remove(session, device, now)
    return view


# ------------------------------------------------------------------------------ client access


def revoke_client(session: Session, lfdi: Any, reason: Any, now: int) -> dict[str, Any]:
    """Shut a client certificate (by its LFDI) out: every 2030.5 request it makes is refused (403)
    in every server process within a quarter second, until restored. Its devices, documents and
    subscriptions stay as they are. Revoking twice keeps the first time and reason."""
    if not isinstance(lfdi, str):
        raise FieldInvalid("lfdi", "'lfdi' (40 hex digits: the certificate's LFDI) is required")
    lfdi = edev.parse_lfdi(lfdi)
    reason = check_text(reason, "'reason'", 200)
    access.revoke(session, lfdi, now, reason)
    return _revoked_view(next(r for r in access.revoked_clients(session) if r.lfdi == lfdi))


def restore_client(session: Session, lfdi: str) -> None:
    """Give a revoked certificate its access back; NotFound when it was not revoked."""
    lfdi = edev.parse_lfdi(lfdi)
    if not access.restore(session, lfdi):
        raise NotFound(f"the certificate {lfdi} is not revoked")


def revoked_clients(session: Session) -> list[dict[str, Any]]:
    return [_revoked_view(r) for r in access.revoked_clients(session)]


def _revoked_view(row: Any) -> dict[str, Any]:
    return {"lfdi": row.lfdi, "revoked_time": row.revoked_time, "reason": row.reason}

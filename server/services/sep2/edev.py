"""EndDevice function set (`/edev`, `/edev/{id}`, `/edev/{id}/rg`): registration and its reads.

Rules (IEEE 2030.5 §6.3.4, §6.3.5, CSIP): a device registers only itself, with the LFDI and SFDI
of its certificate; an aggregator registers LFDIs other than its own and then manages them; an
LFDI is registered once; a device sees only its own EndDevice. How a device looks on the wire is
server.services.sep2.mappers.edev's business.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session

from server.db import access
from server.db import fsa as fsa_store
from server.db import repo
from server.db.models import Device
from server.scope import Role, Scope
from server.sep2 import uris
from server.sep2.identity import is_valid_pin, normalize_lfdi, sfdi_from_lfdi
from server.sep2.models import EndDevice, EndDeviceList, Registration
from server.sep2.paging import Page
from server.services import outbox
from server.services.errors import Conflict, Forbidden, Invalid, NotFound
from server.services.sep2.notices import resources_deleted as notify_removed
from server.services.sep2.mappers import edev as mapper

OPERATOR = "operator"


def _add(session: Session, device: Device) -> Device:
    try:
        return repo.add_device(session, device)
    except repo.Duplicate:
        # Lost a race with a concurrent registration of the same LFDI; the transaction rolls back.
        raise Conflict("this lFDI is already registered") from None


def end_device_list(db: repo.Reader, scope: Scope, page: Page, poll_rate: int) -> EndDeviceList:
    total = repo.count_devices(db, scope)
    rows = repo.list_devices(db, scope, page.start, page.limit)
    return mapper.end_device_list(rows, total, poll_rate, fsa_store.fsa_counts(db, [r.id for r in rows]),
                                  reader_lfdi=_reader(scope))


def visible_device(db: repo.Reader, scope: Scope, device_id: int) -> Any:
    """The device's row when the client may see it; otherwise it does not exist (NotFound)."""
    device = repo.device_row(db, scope, device_id)
    if device is None:
        raise NotFound("no such EndDevice")
    return device


def _for_update(session: Session, scope: Scope, device_id: int) -> Device:
    device = repo.get_device(session, scope, device_id)
    if device is None:
        raise NotFound("no such EndDevice")
    return device


def end_device(db: repo.Reader, scope: Scope, device_id: int) -> EndDevice:
    device = visible_device(db, scope, device_id)
    return mapper.end_device(device, fsa_store.fsa_counts(db, [device.id])[device.id],
                             subscriptions=_reader(scope) in (None, device.lfdi))


def _reader(scope: Scope) -> str | None:
    """Whose EndDevice links the SubscriptionList: a client's own (an aggregator's too, which
    an operator registers when naming it); None for operators (every one does)."""
    return None if scope.role is Role.OPERATOR else scope.lfdi


def parse_lfdi(text: str) -> str:
    try:
        return normalize_lfdi(text)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def _checked_identity(scope: Scope, posted: EndDevice) -> tuple[str, int]:
    """The (LFDI, SFDI) a client may register, or Invalid/Forbidden with the reason."""
    if posted.lfdi is not None:
        lfdi = parse_lfdi(posted.lfdi)
    elif scope.role is Role.DEVICE and scope.lfdi is not None:
        lfdi = scope.lfdi
    else:
        raise Invalid("lFDI is required when registering another device")
    if posted.sfdi != sfdi_from_lfdi(lfdi):
        raise Invalid("sFDI does not belong to the lFDI")
    if scope.role is Role.DEVICE and lfdi != scope.lfdi:
        raise Invalid("a device may register only the lFDI of its own certificate")
    return lfdi, posted.sfdi


def register(
    session: Session, scope: Scope, posted: EndDevice, now: int, *, allow_inband: bool
) -> int:
    """In-band registration (POST /edev). Returns the new EndDevice id. As with PUT, postRate and
    enabled are the server's: a posted value for them is ignored."""
    if scope.role is Role.DEVICE and not allow_inband:
        raise Forbidden("in-band registration is disabled on this server; ask the operator")
    lfdi, sfdi = _checked_identity(scope, posted)
    existing = repo.find_device_by_lfdi(session, lfdi)
    if existing is not None:
        visible = repo.device_row(session, scope, existing.id) is not None
        raise Conflict(
            "this lFDI is already registered",
            location=uris.edev(existing.id) if visible else None,
        )
    managed_by = scope.lfdi if scope.role is Role.AGGREGATOR and lfdi != scope.lfdi else None
    device = _add(
        session,
        Device(
            lfdi=lfdi,
            sfdi=sfdi,
            device_category=posted.device_category,
            enabled=True,
            changed_time=now,
            registered_time=now,
            registered_by=scope.lfdi or OPERATOR,
            aggregator_lfdi=managed_by,
        ),
    )
    outbox.record(session, outbox.DeviceChanged(device.id), now)
    return device.id


def update(session: Session, scope: Scope, device_id: int, posted: EndDevice, now: int) -> None:
    """PUT /edev/{id}: identity is immutable and postRate/enabled are the server's (operators set
    them through the admin API), so a client's PUT changes deviceCategory only; the rest of an
    echoed-back EndDevice is ignored."""
    device = _for_update(session, scope, device_id)
    if posted.lfdi is not None and posted.lfdi.upper() != device.lfdi:
        raise Invalid("lFDI of an EndDevice cannot change")
    if posted.sfdi != device.sfdi:
        raise Invalid("sFDI of an EndDevice cannot change")
    if posted.device_category != device.device_category:
        device.device_category = posted.device_category
        device.changed_time = now
        outbox.record(session, outbox.DeviceChanged(device.id), now)


def delete(session: Session, scope: Scope, device_id: int) -> None:
    """DELETE /edev/{id}: an aggregator for the devices it manages, or an operator; never a device."""
    device = _for_update(session, scope, device_id)
    if scope.role is Role.DEVICE or (
        scope.role is Role.AGGREGATOR and device.aggregator_lfdi != scope.lfdi
    ):
        raise Forbidden("this client may not remove this EndDevice")
    remove(session, device, time.time())


def remove(session: Session, device: Device, now: float) -> None:
    """Remove an EndDevice and everything the 2030.5 server holds about it: its DER documents,
    ConnectionPoint, memberships and FSA places, the events addressed to it alone and the
    Responses to any event, its MirrorUsagePoints with their readings, log events and
    subscriptions (the rows go with it: ON DELETE CASCADE). Its LFDI may then register afresh.
    Refused (Conflict) while the flexibility context has records of it — enrollments, cleared
    setpoints, settlement rows — which are an agreement's and money's history and would be erased
    with it. Subscribers hear of the removal first (`removed`)."""
    kept = access.kept_records(session, device.id)
    if kept:
        what = ", ".join(f"{n} {name}" for name, n in kept.items())
        raise Conflict(f"EndDevice {device.id} has {what}; removing it would erase them, so it stays")
    removed(session, device.id, now)
    repo.delete_device(session, device)


def removed(session: Session, device_id: int, now: float) -> None:
    """Before an EndDevice is removed: its subscribers hear that it is gone (status 4), and
    aggregators' EndDeviceList subscriptions hear of the change."""
    notify_removed(session, device_id, now)
    outbox.record(session, outbox.DeviceChanged(device_id, removed=True), now)


def registration(db: repo.Reader, scope: Scope, device_id: int, poll_rate: int) -> Registration:
    device = visible_device(db, scope, device_id)
    if device.pin is None or device.pin_time is None:
        raise NotFound("no Registration for this EndDevice")
    return mapper.registration(device, poll_rate)


def register_out_of_band(
    session: Session,
    lfdi: str,
    now: int,
    *,
    pin: int | None = None,
    aggregator_lfdi: str | None = None,
    label: str | None = None,
    post_rate: int | None = None,
) -> Device:
    """Operator registration: the device finds itself in /edev and checks the PIN at /edev/{id}/rg."""
    lfdi = parse_lfdi(lfdi)
    if pin is not None and not is_valid_pin(pin):
        raise Invalid("PIN must be 5 digits and a check digit (e.g. 111115)")
    if aggregator_lfdi is not None:
        aggregator_lfdi = parse_lfdi(aggregator_lfdi)
    if repo.find_device_by_lfdi(session, lfdi) is not None:
        raise Conflict("this lFDI is already registered")
    device = _add(
        session,
        Device(
            lfdi=lfdi,
            sfdi=sfdi_from_lfdi(lfdi),
            enabled=True,
            post_rate=post_rate,
            changed_time=now,
            registered_time=now,
            registered_by=OPERATOR,
            aggregator_lfdi=aggregator_lfdi,
            pin=pin,
            pin_time=now if pin is not None else None,
            label=label,
        ),
    )
    outbox.record(session, outbox.DeviceChanged(device.id), now)
    return device

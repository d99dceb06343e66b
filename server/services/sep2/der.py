"""DER function set (`/edev/{id}/der…`): a device's DER and the four documents it PUTs about it.

Resources. Every registered EndDevice has exactly one DER, id 1: `/edev/{id}/der` (DERList, always
that one entry) and `/edev/{id}/der/1` (DER, always linking all four documents). The documents —
DERCapability `dercap`, DERSettings `derg`, DERStatus `ders`, DERAvailability `dera` — are the
device's to PUT; a GET answers the last one stored, and 404 until the first PUT.

Who. Exactly as for the EndDevice: the device itself and the aggregator that manages it may GET
and PUT; anyone else is told the resource does not exist (404).

PUT semantics. A PUT replaces the whole document (nothing is merged with the previous one) and
answers 204, the first time as well: the resource's URI is fixed, nothing is created that the
client has to be told about (201 + Location belongs to POST). What is stored is the canonical
document: `href` is the resource's own URI whatever the body said, and `subscribable` is dropped
(the server offers no subscriptions on these resources yet). A GET returns exactly that.

Validation. The codec has already checked every value against its schema type (and PerCent,
e.g. stateOfChargeStatus, reservePercent, against 0…10000). On top of that, each of these
refuses the PUT with 400 (reasonCode 1) and stores nothing:

- DERCapability: rtgMaxW > 0 W; rtgMaxChargeRateW ≥ 0 W and rtgMaxDischargeRateW ≥ 0 W where
  present (ActivePower is signed on the wire; a negative rating means nothing).
- DERSettings: setMaxW > 0 W (every opModFixedW / opModMaxLimW percentage is a share of it);
  setMaxChargeRateW ≥ 0 W and setMaxDischargeRateW ≥ 0 W where present; updatedTime at most
  MAX_FUTURE_SECONDS (one day) after the server's clock.
- DERSettings against a stored DERCapability of the same DER (only when one was PUT before): no
  setting above its rating — setMaxW ≤ rtgMaxW, and setMaxChargeRateW ≤ rtgMaxChargeRateW,
  setMaxDischargeRateW ≤ rtgMaxDischargeRateW, setMaxWh ≤ rtgMaxWh where both are present.
  A later DERCapability is not checked against stored settings: the device reports its hardware
  as it is (a derated unit), so consumers should use min(setting, rating).
- DERStatus and DERAvailability: readingTime at most MAX_FUTURE_SECONDS after the server's clock
  (a clock that far ahead would make every freshness decision wrong). Past times are accepted.

Domain columns (server.db.der) hold the amounts in SI units beside the canonical document; how
documents, rows and columns map onto each other is server.services.sep2.mappers.der's business.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from server.db import der as der_db
from server.db import repo
from server.scope import Scope
from server.sep2 import uris
from server.sep2.der import DER, DERAvailability, DERCapability, DERList, DERSettings, DERStatus
from server.sep2.paging import Page
from server.services import outbox
from server.services.errors import Invalid, NotFound
from server.services.sep2.edev import visible_device
from server.services.sep2.mappers import der as mapper
from server.services.sep2.mappers.der import Document, amount

DER_ID = 1  # one DER per EndDevice
MAX_FUTURE_SECONDS = 86_400  # how far ahead of the server's clock a reported time may be


# ---------------------------------------------------------------------------------- validation


def _not_in_future(name: str, when: int, now: int) -> None:
    if when > now + MAX_FUTURE_SECONDS:
        raise Invalid(f"{name} is more than {MAX_FUTURE_SECONDS} s ahead of the server's clock")


def _non_negative(name: str, amount: float | None) -> None:
    if amount is not None and amount < 0:
        raise Invalid(f"{name} must not be negative")


def _check_capability(db: repo.Reader, scope: Scope, device_id: int, doc: DERCapability, now: int) -> None:
    if amount(doc.rtg_max_w) <= 0:  # type: ignore[operator]  # required: never None
        raise Invalid("rtgMaxW must be more than 0 W")
    _non_negative("rtgMaxChargeRateW", amount(doc.rtg_max_charge_rate_w))
    _non_negative("rtgMaxDischargeRateW", amount(doc.rtg_max_discharge_rate_w))


def _check_settings(db: repo.Reader, scope: Scope, device_id: int, doc: DERSettings, now: int) -> None:
    columns = mapper.settings_columns(doc)
    if columns["set_max_w"] <= 0:
        raise Invalid("setMaxW must be more than 0 W")
    _non_negative("setMaxChargeRateW", columns["set_max_charge_rate_w"])
    _non_negative("setMaxDischargeRateW", columns["set_max_discharge_rate_w"])
    _not_in_future("updatedTime", doc.updated_time, now)
    rating = der_db.record(db, scope, der_db.DerCapability, device_id, DER_ID)
    if rating is None:
        return
    for setting, rated, names in (
        ("set_max_w", "rtg_max_w", ("setMaxW", "rtgMaxW")),
        ("set_max_charge_rate_w", "rtg_max_charge_rate_w", ("setMaxChargeRateW", "rtgMaxChargeRateW")),
        ("set_max_discharge_rate_w", "rtg_max_discharge_rate_w", ("setMaxDischargeRateW", "rtgMaxDischargeRateW")),
        ("set_max_wh", "rtg_max_wh", ("setMaxWh", "rtgMaxWh")),
    ):
        value, limit = columns[setting], getattr(rating, rated)
        if value is not None and limit is not None and value > limit:
            raise Invalid(f"{names[0]} ({value:g}) exceeds the DERCapability's {names[1]} ({limit:g})")


def _check_status(db: repo.Reader, scope: Scope, device_id: int, doc: DERStatus, now: int) -> None:
    _not_in_future("readingTime", doc.reading_time, now)


def _check_availability(db: repo.Reader, scope: Scope, device_id: int, doc: DERAvailability, now: int) -> None:
    _not_in_future("readingTime", doc.reading_time, now)


@dataclasses.dataclass(frozen=True, slots=True)
class _Kind:
    record: der_db.DerRecord
    template: str
    check: Callable[[repo.Reader, Scope, int, Any, int], None]


_KINDS: dict[type, _Kind] = {
    DERCapability: _Kind(der_db.DerCapability, uris.DERCAP, _check_capability),
    DERSettings: _Kind(der_db.DerSettings, uris.DERG, _check_settings),
    DERStatus: _Kind(der_db.DerStatus, uris.DERS, _check_status),
    DERAvailability: _Kind(der_db.DerAvailability, uris.DERA, _check_availability),
}


# ------------------------------------------------------------------------------------ reads


def _visible_der(db: repo.Reader, scope: Scope, device_id: int, der_id: int) -> None:
    if der_id != DER_ID or repo.device_row(db, scope, device_id) is None:
        raise NotFound("no such DER")


def der_list(db: repo.Reader, scope: Scope, device_id: int, page: Page, poll_rate: int) -> DERList:
    """The EndDevice's DERs: always its one DER. `s`/`l` page it; `a` does not apply (not a
    time-ordered list) and is ignored, as for EndDeviceList."""
    visible_device(db, scope, device_id)
    ders = [mapper.der(device_id, DER_ID)][page.start : page.start + page.limit]
    return mapper.der_list(device_id, ders, 1, poll_rate)


def der(db: repo.Reader, scope: Scope, device_id: int, der_id: int) -> DER:
    _visible_der(db, scope, device_id, der_id)
    return mapper.der(device_id, der_id)


def document(db: repo.Reader, scope: Scope, device_id: int, der_id: int, model: type[Document]) -> Document:
    """The document of kind `model` as last stored; NotFound before the first PUT (and outside
    the scope, which must not be told apart)."""
    row = der_db.record(db, scope, _KINDS[model].record, device_id, der_id)
    if row is None:
        raise NotFound(f"no {model.__name__} reported for this DER")
    return mapper.stored_document(row.document, model)


# ----------------------------------------------------------------------------------- writes


def stored_row(device_id: int, der_id: int, posted: Document, now: int) -> tuple[der_db.DerRecord, dict[str, Any]]:
    """The table and the row a PUT of `posted` stores (its canonical document and columns),
    without the checks: `put` writes it, and tools that load many devices at once build it here."""
    kind = _KINDS[type(posted)]
    doc = mapper.canonical(posted, uris.href(kind.template, edev_id=device_id, der_id=der_id))
    return kind.record, mapper.document_row(device_id, der_id, doc, now)


def put(session: Session, scope: Scope, device_id: int, der_id: int, posted: Document, now: int) -> None:
    """PUT of one of the four documents (its kind is the posted model's): check, then replace."""
    _visible_der(session, scope, device_id, der_id)
    _KINDS[type(posted)].check(session, scope, device_id, posted, now)
    der_db.store(session, *stored_row(device_id, der_id, posted, now))
    document = _KINDS[type(posted)].template.rsplit("/", 1)[-1]  # dercap, derg, ders, dera
    outbox.record(session, outbox.DerDocumentChanged(device_id, document), now)

"""DER function set (`der`): a device's DER and DERList, and the four documents it PUTs about
it (DERCapability, DERSettings, DERStatus, DERAvailability) between their wire form, the row
stored for them and the domain columns read from them.

A stored document is the canonical one — `href` its resource's own URI, `subscribable` dropped —
rendered as text, beside its amounts in SI units (value × 10^multiplier as a float: setMaxW 5 ×
10^3 → 5000.0 W; percentages as percent: stateOfChargeStatus 5550 → 55.5), which clearing reads
without parsing XML.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from server.sep2 import codec, uris
from server.sep2.der import DER, DERAvailability, DERCapability, DERList, DERSettings, DERStatus

Document = DERCapability | DERSettings | DERStatus | DERAvailability


# ------------------------------------------------------------------------------------- the DER


def der(device_id: int, der_id: int) -> DER:
    """A device's DER, linking its four documents."""
    ids = {"edev_id": device_id, "der_id": der_id}
    return DER(
        href=uris.href(uris.DER, **ids),
        der_availability_link=uris.href(uris.DERA, **ids),
        der_capability_link=uris.href(uris.DERCAP, **ids),
        der_settings_link=uris.href(uris.DERG, **ids),
        der_status_link=uris.href(uris.DERS, **ids),
    )


def der_list(device_id: int, ders: Sequence[DER], all_: int, poll_rate: int) -> DERList:
    """A page of a device's DERs out of `all_`."""
    return DERList(
        href=uris.href(uris.DER_LIST, edev_id=device_id),
        all=all_,
        results=len(ders),
        poll_rate=poll_rate,
        ders=list(ders),
    )


# ------------------------------------------------------------------------------- domain columns


def amount(quantity: Any) -> float | None:
    """A value × 10^multiplier quantity in its SI unit, or None when absent."""
    return None if quantity is None else float(quantity.amount)


def _percent(hundredths: int | None) -> float | None:
    return None if hundredths is None else hundredths / 100


def _status(status: Any) -> int | None:
    return None if status is None else status.value


def _bitmap(status: Any) -> int | None:
    return None if status is None else int(status.value or "0", 16)


def capability_columns(doc: DERCapability) -> dict[str, Any]:
    return {
        "der_type": doc.type,
        "rtg_max_w": amount(doc.rtg_max_w),
        "rtg_max_charge_rate_w": amount(doc.rtg_max_charge_rate_w),
        "rtg_max_discharge_rate_w": amount(doc.rtg_max_discharge_rate_w),
        "rtg_max_wh": amount(doc.rtg_max_wh),
    }


def settings_columns(doc: DERSettings) -> dict[str, Any]:
    return {
        "updated_time": doc.updated_time,
        "set_max_w": amount(doc.set_max_w),
        "set_max_charge_rate_w": amount(doc.set_max_charge_rate_w),
        "set_max_discharge_rate_w": amount(doc.set_max_discharge_rate_w),
        "set_max_wh": amount(doc.set_max_wh),
    }


def status_columns(doc: DERStatus) -> dict[str, Any]:
    return {
        "reading_time": doc.reading_time,
        "state_of_charge_percent": _percent(_status(doc.state_of_charge_status)),
        "operational_mode": _status(doc.operational_mode_status),
        "storage_mode": _status(doc.storage_mode_status),
        "inverter_status": _status(doc.inverter_status),
        "gen_connect_status": _bitmap(doc.gen_connect_status),
        "stor_connect_status": _bitmap(doc.stor_connect_status),
    }


def availability_columns(doc: DERAvailability) -> dict[str, Any]:
    return {
        "reading_time": doc.reading_time,
        "stat_w_avail_w": amount(doc.stat_w_avail),
        "stat_var_avail_var": amount(doc.stat_var_avail),
        "reserve_percent": _percent(doc.reserve_percent),
        "reserve_charge_percent": _percent(doc.reserve_charge_percent),
        "max_charge_duration_s": doc.max_charge_duration,
        "availability_duration_s": doc.availability_duration,
    }


COLUMNS: dict[type, Callable[[Any], dict[str, Any]]] = {
    DERCapability: capability_columns,
    DERSettings: settings_columns,
    DERStatus: status_columns,
    DERAvailability: availability_columns,
}


# ------------------------------------------------------------------------------ stored documents


def canonical(posted: Document, href: str) -> Document:
    """What is stored of a PUT document: `href` the resource's own, `subscribable` dropped."""
    fields: dict[str, Any] = {"href": href}
    if any(f.name == "subscribable" for f in dataclasses.fields(posted)):
        fields["subscribable"] = None
    return dataclasses.replace(posted, **fields)


def document_row(device_id: int, der_id: int, doc: Document, now: int) -> dict[str, Any]:
    """The row stored for a canonical document received at `now`: its text and its columns."""
    return {
        "device_id": device_id,
        "der_id": der_id,
        "document": codec.render(doc).decode("utf-8"),
        "received_time": now,
        **COLUMNS[type(doc)](doc),
    }


def stored_document(text: str, model: type[Document]) -> Document:
    """A stored document (its text) as its model."""
    data = text.encode("utf-8")
    return codec.parse(data, model, max_bytes=len(data))

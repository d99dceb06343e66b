"""DER program function set (`derp`): DERProgram, DERControl, DefaultDERControl and their lists
from the stored rows (server.db.derp), and the control itself (DERControlBase) between its stored
XML text, its model, an operator's JSON object and the one-mode controls publishing writes.

A stored control is the canonical DERControlBase document; rows keep it as text and the modes it
sets as a space-separated list (the supersession rule compares them).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from programs.controls import MODE_FIXED_W, MODE_MAX_LIM_W, MODE_TARGET_W
from server.sep2 import codec, events, uris
from server.sep2.sub import SUBSCRIBABLE
from server.sep2.der import ActivePower
from server.sep2.derp import (
    DateTimeInterval,
    DefaultDERControl,
    DERControl,
    DERControlBase,
    DERControlList,
    DERProgram,
    DERProgramList,
    EventStatus,
)
from server.sep2.types import ListLinkValue
from server.services.sep2.mappers import dc


# ------------------------------------------------------------------------------ DERControlBase


def der_control_base_xml(base: DERControlBase) -> str:
    """The stored text of a control: its canonical XML document."""
    return codec.render(base).decode()


def control_base_xml(mode: str, value: int, multiplier: int | None) -> str:
    """The stored text of a one-mode control as programs.controls plans it: opModFixedW or
    opModMaxLimW with `value` in hundredths of a percent, opModTargetW as value × 10^multiplier W."""
    if mode == MODE_TARGET_W:
        base = DERControlBase(op_mod_target_w=ActivePower(value=value, multiplier=multiplier or 0))
    elif mode == MODE_MAX_LIM_W:
        base = DERControlBase(op_mod_max_lim_w=value)
    elif mode == MODE_FIXED_W:
        base = DERControlBase(op_mod_fixed_w=value)
    else:
        raise ValueError(f"not a control mode: {mode!r}")
    return der_control_base_xml(base)


def parse_der_control_base(xml: str | bytes) -> DERControlBase:
    """A control read from XML text, every value checked by its schema type (DecodeError)."""
    return codec.parse(xml.encode() if isinstance(xml, str) else xml, DERControlBase)


@lru_cache(maxsize=4096)
def stored_der_control_base(xml: str) -> DERControlBase:
    """A stored control as its model. Stored controls never change, so one parsed model is shared
    by every read: treat it as read-only."""
    return parse_der_control_base(xml)


def control_modes(base: DERControlBase) -> str:
    """The modes a control sets, by their 2030.5 names, space-separated in schema order."""
    return " ".join(f.metadata["xml"] for f in dataclasses.fields(base) if getattr(base, f.name) is not None)


def _json_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {
            f.metadata["xml"]: _json_value(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        }
    return value


def der_control_base_json(xml: str | None) -> dict[str, Any] | None:
    """A stored control as the JSON object operators read and write, keyed by the 2030.5 names
    ({"opModFixedW": 5000}, {"opModTargetW": {"multiplier": 1, "value": -5000}}); None stays None."""
    if not xml:
        return None
    return dc.control_json_curves(_json_value(stored_der_control_base(xml)))


# ----------------------------------------------------------------------------------- programs


def der_program(edev_id: int, row: Any) -> DERProgram:
    """A DER program (row: id, mrid, description, version, primacy, default_base) as `edev_id` sees it."""
    ids = {"edev_id": edev_id, "derp_id": row.id}
    return DERProgram(
        href=uris.href(uris.DERP, **ids),
        mrid=row.mrid,
        description=row.description,
        version=row.version,
        active_der_control_list_link=ListLinkValue(uris.href(uris.ACTDERC, **ids)),
        # always: a program without an operator's default has an empty one (services.sep2.derp)
        default_der_control_link=uris.href(uris.DDERC, **ids),
        der_control_list_link=ListLinkValue(uris.href(uris.DERC_LIST, **ids)),
        der_curve_list_link=ListLinkValue(uris.href(uris.DC_LIST, **ids)),
        primacy=row.primacy,
    )


def der_program_list(edev_id: int, fsa_id: int, rows: Sequence[Any], all_: int, poll_rate: int) -> DERProgramList:
    """A page of `edev_id`'s DER programs (`rows`) out of `all_`."""
    return DERProgramList(
        href=uris.href(uris.DERP_LIST, edev_id=edev_id, fsa_id=fsa_id),
        subscribable=SUBSCRIBABLE,
        all=all_,
        results=len(rows),
        poll_rate=poll_rate,
        der_programs=[der_program(edev_id, r) for r in rows],
    )


_DEFAULT_FIELD_NAMES = {f.metadata["xml"]: f.name for f in dataclasses.fields(DefaultDERControl)}


@lru_cache(maxsize=1024)
def _default_fields(text: str | None) -> tuple[tuple[str, Any], ...]:
    """Stored DefaultDERControl fields (JSON by 2030.5 names) as (field name, value) pairs."""
    return tuple((_DEFAULT_FIELD_NAMES[k], v) for k, v in json.loads(text).items()) if text else ()


def default_settings_json(text: str | None) -> dict[str, Any]:
    """The stored DefaultDERControl fields as operators read and write them (2030.5 names)."""
    return json.loads(text) if text else {}


def default_der_control(edev_id: int, row: Any) -> DefaultDERControl:
    """A DER program's default control (row: id, default_mrid, default_version, default_base,
    default_settings: its own fields such as setGradW and setESDelay, JSON by 2030.5 names)."""
    return DefaultDERControl(
        href=uris.href(uris.DDERC, edev_id=edev_id, derp_id=row.id),
        subscribable=SUBSCRIBABLE,
        mrid=row.default_mrid,
        version=row.default_version,
        der_control_base=dc.device_control_base(stored_der_control_base(row.default_base), edev_id, row.id),
        **dict(_default_fields(row.default_settings)),
    )


# ----------------------------------------------------------------------------------- controls


def der_control(edev_id: int, derp_id: int, row: Any, state: events.EventState) -> DERControl:
    """An event (a DerEvent row) as `edev_id` sees it, with its status at read time (`state`)."""
    return DERControl(
        href=uris.href(uris.DERC, edev_id=edev_id, derp_id=derp_id, derc_id=row.id),
        reply_to=uris.href(uris.RSP_LIST, rsps_id=derp_id),
        response_required=row.response_required,
        mrid=row.mrid,
        description=row.description,
        version=0,
        creation_time=row.creation_time,
        event_status=EventStatus(
            current_status=int(state.status),
            date_time=state.date_time,
            potentially_superseded=state.potentially_superseded,
            potentially_superseded_time=state.potentially_superseded_time,
        ),
        interval=DateTimeInterval(duration=row.duration, start=row.start),
        randomize_duration=row.randomize_duration,
        randomize_start=row.randomize_start,
        der_control_base=dc.device_control_base(stored_der_control_base(row.base), edev_id, derp_id),
    )


def der_control_list(
    edev_id: int, derp_id: int, listed: Sequence[tuple[Any, events.EventState]], all_: int, *, active_only: bool
) -> DERControlList:
    """A page of events with their states (`listed`) out of `all_`: the DERControlList, or with
    `active_only` the ActiveDERControlList (same document, its own href)."""
    template = uris.ACTDERC if active_only else uris.DERC_LIST
    return DERControlList(
        href=uris.href(template, edev_id=edev_id, derp_id=derp_id),
        subscribable=SUBSCRIBABLE,
        all=all_,
        results=len(listed),
        der_controls=[der_control(edev_id, derp_id, r, s) for r, s in listed],
    )

"""DER curves (`/edev/{id}/derp/{p}/dc[/{c}]`): the curves of a DER program, as a device sees them,
the operator's side (add, list, show, delete), and the curve links of controls.

A device sees the curves of the DER programs its FunctionSetAssignments lead it to (another
program's, or another device's path, is not found). Operators author curves as JSON keyed by the
2030.5 names; the rules, checked before anything is stored (Invalid: 400 / problem JSON):

- `curveType` 0…14 (or its mode name, "opModVoltVar"); `yRefType` 0…7 (DERUnitRefType; a
  volt-var curve's is %setMaxW, %setMaxVar or %statVarAvail, as the schema says);
- `CurveData`: 1…10 points {xvalue, yvalue (Int32), excitation?}. x strictly increasing for the
  five curves the schema calls piecewise linear functions of x (volt-var, volt-watt, freq-watt,
  watt-PF, watt-var); non-decreasing for the ride-through curves, whose steps repeat a duration;
- `excitation` on every point of a watt-PF curve (whose yvalue, a power factor, is positive)
  and on no other; `vRef`, `autonomousVRefEnable`, `autonomousVRefTimeConstant` only on a
  volt-var curve (the schema's SHALL NOT);
- `xMultiplier`, `yMultiplier` −9…9 (default 0); `openLoopTms`, `rampDecTms`, `rampIncTms`,
  `rampPT1Tms` UInt16; `description` at most 32 characters.

Curves are not edited: add a new one and point the controls at it. A curve that the DER program's
default control, or an event of it that has not ended, links to cannot be deleted (Conflict, 409).

Controls link a curve by a curve-linked mode (opModVoltVar: 3, or the href a device sees,
"/edev/5/derp/1/dc/3"); `link_curves` checks that it names a curve of that DER program of the
mode's type and stores it as server.services.sep2.mappers.dc's token.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from server.db import curves as store
from server.db.repo import Reader
from server.scope import Scope
from server.sep2.codec import DecodeError
from server.sep2.curves import (
    CURVE_TYPE_OF_MODE,
    CURVE_TYPES,
    MAX_POINTS,
    MIN_POINTS,
    VOLT_VAR,
    WATT_PF,
    Y_REF_TYPES,
    CurveData,
    DERCurve,
    DERCurveList,
)
from server.sep2.derp import DERControlBase
from server.sep2.events import LIST_GRACE_SECONDS
from server.sep2.identity import new_mrid
from server.sep2.paging import Page
from server.services.errors import Conflict, Invalid, NotFound, check_text, no_unknown_keys
from server.services.sep2 import derp
from server.services.sep2.mappers import dc as mapper

# Curves whose y is a function of x (the schema: "interpolated into a piecewise linear function").
STRICTLY_INCREASING_X = frozenset({0, 11, 12, 13, 14})
VOLT_VAR_Y_REF_TYPES = frozenset({1, 2, 3})
VOLT_VAR_ONLY = ("vRef", "autonomousVRefEnable", "autonomousVRefTimeConstant")
MULTIPLIER_RANGE = (-9, 9)
_UINT16 = ("openLoopTms", "rampDecTms", "rampIncTms", "rampPT1Tms")
_KEYS = frozenset({"description", "curveType", "CurveData", "xMultiplier", "yMultiplier", "yRefType",
                   *VOLT_VAR_ONLY, *_UINT16})
_POINT_KEYS = frozenset({"xvalue", "yvalue", "excitation"})
_HREF = re.compile(r"/edev/[0-9]{1,10}/derp/([0-9]{1,10})/dc/([0-9]{1,10})")
_FIELD = {"vRef": "v_ref", "autonomousVRefEnable": "autonomous_v_ref_enable",
          "autonomousVRefTimeConstant": "autonomous_v_ref_time_constant", "openLoopTms": "open_loop_tms",
          "rampDecTms": "ramp_dec_tms", "rampIncTms": "ramp_inc_tms", "rampPT1Tms": "ramp_pt1_tms"}


# --------------------------------------------------------------------------------- device side


def _der_program(db: Reader, scope: Scope, edev_id: int, derp_id: int) -> None:
    derp.der_program(db, scope, edev_id, derp_id)  # NotFound unless the device reaches it


def curve_list(db: Reader, scope: Scope, edev_id: int, derp_id: int, page: Page) -> DERCurveList:
    """A page of the DER program's curves, newest first."""
    _der_program(db, scope, edev_id, derp_id)
    total, rows = store.curves_of_program(db, derp_id, page.start, page.limit)
    return mapper.der_curve_list(edev_id, derp_id, rows, total)


def curve(db: Reader, scope: Scope, edev_id: int, derp_id: int, dc_id: int) -> DERCurve:
    _der_program(db, scope, edev_id, derp_id)
    row = store.curve_of_program(db, derp_id, dc_id)
    if row is None:
        raise NotFound("no such DERCurve in this DERProgram")
    return mapper.der_curve(edev_id, derp_id, row)


# ------------------------------------------------------------------------------- operator side


def _int(body: Mapping[str, Any], key: str, lo: int, hi: int, default: int | None = None) -> int | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise Invalid(f"{key} must be an integer {lo}…{hi}")
    return value


def _curve_type(value: Any) -> int:
    if isinstance(value, str) and value in CURVE_TYPE_OF_MODE:
        return CURVE_TYPE_OF_MODE[value]
    if isinstance(value, bool) or not isinstance(value, int) or value not in CURVE_TYPES:
        names = ", ".join(f"{k} {v}" for k, v in CURVE_TYPES.items())
        raise Invalid(f"curveType must be one of {names}")
    return value


def _points(value: Any, curve_type: int) -> list[CurveData]:
    if not isinstance(value, list) or not MIN_POINTS <= len(value) <= MAX_POINTS:
        raise Invalid(f"CurveData must be a list of {MIN_POINTS}…{MAX_POINTS} points "
                      '[{"xvalue": …, "yvalue": …}, …]')
    points: list[CurveData] = []
    for i, p in enumerate(value):
        no_unknown_keys(p, _POINT_KEYS, f"CurveData[{i}]")
        x, y = (_int(p, k, -(2**31), 2**31 - 1) for k in ("xvalue", "yvalue"))
        if x is None or y is None:
            raise Invalid(f"CurveData[{i}] needs xvalue and yvalue (Int32)")
        excitation = p.get("excitation")
        if curve_type == WATT_PF:
            if not isinstance(excitation, bool):
                raise Invalid(f"CurveData[{i}]: a watt-PF curve's points need excitation (true: absorbing "
                              "vars, under-excited; false: injecting)")
            if y <= 0:
                raise Invalid(f"CurveData[{i}]: a power factor yvalue must be positive")
        elif excitation is not None:
            raise Invalid(f"CurveData[{i}]: excitation is only for watt-PF curves (yvalue a power factor)")
        points.append(CurveData(excitation=excitation, xvalue=x, yvalue=y))
    xs = [p.xvalue for p in points]
    if curve_type in STRICTLY_INCREASING_X:
        if any(b <= a for a, b in zip(xs, xs[1:])):
            raise Invalid(f"the xvalues of a {CURVE_TYPES[curve_type]} curve must be strictly increasing")
    elif any(b < a for a, b in zip(xs, xs[1:])):
        raise Invalid(f"the xvalues (durations) of a {CURVE_TYPES[curve_type]} curve must not decrease")
    return points


def parse_curve(body: Any, now: int, *, pen: int = 0) -> DERCurve:
    """A DERCurve from an operator's JSON object, every rule of the module docstring checked."""
    no_unknown_keys(body, _KEYS, "a DER curve")
    for key in ("curveType", "CurveData", "yRefType"):
        if key not in body:
            raise Invalid("'curveType', 'CurveData' and 'yRefType' are required, e.g. "
                          '{"curveType": "opModVoltVar", "yRefType": 2, "CurveData": [{"xvalue": 92, '
                          '"yvalue": 30}, {"xvalue": 108, "yvalue": -30}]}')
    curve_type = _curve_type(body["curveType"])
    y_ref_type = _int(body, "yRefType", 0, max(Y_REF_TYPES))
    if curve_type == VOLT_VAR and y_ref_type not in VOLT_VAR_Y_REF_TYPES:
        raise Invalid("a volt-var curve's yRefType must be 1 (%setMaxW), 2 (%setMaxVar) or 3 (%statVarAvail)")
    if curve_type != VOLT_VAR:
        present = [k for k in VOLT_VAR_ONLY if body.get(k) is not None]
        if present:
            raise Invalid(f"{', '.join(present)} only for volt-var curves (curveType 11)")
    extra: dict[str, Any] = {}
    for key in _UINT16:
        extra[_FIELD[key]] = _int(body, key, 0, 65535)
    extra["v_ref"] = _int(body, "vRef", 0, 10_000)
    extra["autonomous_v_ref_time_constant"] = _int(body, "autonomousVRefTimeConstant", 0, 2**32 - 1)
    enable = body.get("autonomousVRefEnable")
    if enable is not None and not isinstance(enable, bool):
        raise Invalid("autonomousVRefEnable must be true or false")
    extra["autonomous_v_ref_enable"] = enable
    curve = DERCurve(
        mrid=new_mrid(pen),
        description=check_text(body.get("description"), "description", 32),
        version=0,
        creation_time=now,
        curve_data=_points(body["CurveData"], curve_type),
        curve_type=curve_type,
        x_multiplier=_int(body, "xMultiplier", *MULTIPLIER_RANGE, default=0),
        y_multiplier=_int(body, "yMultiplier", *MULTIPLIER_RANGE, default=0),
        y_ref_type=y_ref_type,
        **extra,
    )
    try:  # the wire types judge once more, as the document devices will read
        return mapper.stored_curve(mapper.curve_document(curve))
    except (DecodeError, ValueError) as exc:
        raise Invalid(f"curve out of range: {exc}") from None


def _program(session: Session, program_id: int) -> None:
    derp.der_program_row(session, program_id)  # NotFound when there is none


def add_curve(session: Session, program_id: int, body: Any, now: int, *, pen: int = 0) -> dict[str, Any]:
    """Add a curve to a DER program; returns its view."""
    _program(session, program_id)
    curve = parse_curve(body, now, pen=pen)
    row = store.add_curve(session, store.DerCurve(
        program_id=program_id, mrid=curve.mrid, description=curve.description, curve_type=curve.curve_type,
        creation_time=now, document=mapper.curve_document(curve)))
    return mapper.curve_json(row)


def list_curves(session: Session, program_id: int, start: int = 0, limit: int = 100) -> dict[str, Any]:
    _program(session, program_id)
    total, rows = store.curves_of_program(session, program_id, start, limit)
    return {"all": total, "curves": [mapper.curve_json(r) for r in rows]}


def _curve(session: Session, program_id: int, curve_id: int) -> store.DerCurve:
    _program(session, program_id)
    row = store.get_curve(session, program_id, curve_id)
    if row is None:
        raise NotFound(f"no curve {curve_id} in DER program {program_id}")
    return row


def get_curve(session: Session, program_id: int, curve_id: int) -> dict[str, Any]:
    return mapper.curve_json(_curve(session, program_id, curve_id))


def delete_curve(session: Session, program_id: int, curve_id: int, now: int) -> None:
    """Delete a curve no control of its DER program uses (Conflict otherwise)."""
    row = _curve(session, program_id, curve_id)
    if store.curve_in_use(session, program_id, mapper.stored_href(curve_id), since=now - LIST_GRACE_SECONDS):
        raise Conflict(f"curve {curve_id} is used by DER program {program_id}'s default control or by one "
                       "of its events that has not ended; change or cancel those first")
    store.delete_curve(session, row)


# ------------------------------------------------------------------------ controls' curve links


def _curve_id(value: str, program_id: int, mode: str) -> int:
    if value.isascii() and value.isdigit() and len(value) <= 10:
        return int(value)
    token = mapper.curve_id_of(value)
    if token is not None:
        return token
    match = _HREF.fullmatch(value)
    if match is None or int(match[1]) != program_id:
        raise Invalid(f"{mode} {value[:80]!r} names no curve of DER program {program_id}")
    return int(match[2])


def linked_control(session: Session, program_id: int, spec: Any) -> DERControlBase:
    """An operator's control object (server.services.sep2.derp.control_base) for DER program
    `program_id`, its curve links checked and resolved: what its default control and events store."""
    return link_curves(session, program_id, derp.control_base(spec))


def link_curves(session: Session, program_id: int, base: DERControlBase) -> DERControlBase:
    """`base` with each curve link checked (a curve of this DER program, of the mode's curveType)
    and stored as the mapper's token; unchanged when it links no curve."""
    if not mapper.has_curve_links(base):
        return base
    _program(session, program_id)
    changes: dict[str, str] = {}
    for name, xml in mapper.CURVE_MODE_FIELDS:
        value = getattr(base, name)
        if value is None:
            continue
        curve_id = _curve_id(value, program_id, xml)
        row = store.get_curve(session, program_id, curve_id) if curve_id < 2**31 else None
        if row is None:
            raise Invalid(f"{xml}: DER program {program_id} has no curve {curve_id}")
        if row.curve_type != CURVE_TYPE_OF_MODE[xml]:
            raise Invalid(f"{xml} needs a curve of curveType {CURVE_TYPE_OF_MODE[xml]}; curve {curve_id} is "
                          f"{CURVE_TYPES.get(row.curve_type, row.curve_type)}")
        changes[name] = mapper.stored_href(curve_id)
    return dataclasses.replace(base, **changes)

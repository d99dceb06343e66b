"""Gathering and clearing a window's fleet: the program's active enrollments of enabled devices with
what their DER reported, one curve per device (from its offer or its ratings), and the exact
clearing of each interval's request with grid-node adders and limits under the price cap."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
import numpy as np
from sqlalchemy import and_, select
from sqlalchemy.orm import Session
from programs import curves as domain_curves
from programs.clearing import BidCurve, CurveBook
from programs.controls import ControlRatings, control_for, der_type_kind
from programs.grid import GridClearing, clear_with_grid
from programs.kinds import DeviceKind
from programs.enrollment import State as EnrollmentState
from programs.model import Program
from server.db import der as der_db
from server.db import flex as store
from server.db.models import Device
from server.services import clock
from server.services.sep2.der import DER_ID
from server.services.flex.grid_nodes import grid_tree


def reported_kind(session: Session, device_id: int) -> DeviceKind | None:
    cap = session.get(der_db.DerCapability, (device_id, DER_ID))
    return der_type_kind(cap.der_type) if cap is not None else None


_RATINGS_COLUMNS = (
    der_db.DerSettings.set_max_w, der_db.DerSettings.set_max_charge_rate_w,
    der_db.DerSettings.set_max_discharge_rate_w, der_db.DerSettings.set_max_wh,
    der_db.DerCapability.rtg_max_w, der_db.DerCapability.rtg_max_charge_rate_w,
    der_db.DerCapability.rtg_max_discharge_rate_w, der_db.DerCapability.rtg_max_wh,
    der_db.DerStatus.state_of_charge_percent, der_db.DerAvailability.reserve_percent,
    der_db.DerAvailability.availability_duration_s,
)


def _with_ratings(stmt: Any, device_col: Any) -> Any:
    for model in (der_db.DerSettings, der_db.DerCapability, der_db.DerStatus, der_db.DerAvailability):
        stmt = stmt.outerjoin(model, and_(model.device_id == device_col, model.der_id == DER_ID))
    return stmt


@dataclass(frozen=True)
class DeviceData:
    """What the server knows of one device's DER, in SI units (None: not reported)."""

    set_max_w: float | None = None
    set_max_charge_rate_w: float | None = None
    set_max_discharge_rate_w: float | None = None
    set_max_wh: float | None = None
    rtg_max_w: float | None = None
    rtg_max_charge_rate_w: float | None = None
    rtg_max_discharge_rate_w: float | None = None
    rtg_max_wh: float | None = None
    soc_percent: float | None = None
    reserve_percent: float | None = None
    availability_s: int | None = None

    def control_ratings(self) -> ControlRatings:
        return ControlRatings(
            set_max_w=self.set_max_w, set_max_charge_rate_w=self.set_max_charge_rate_w,
            set_max_discharge_rate_w=self.set_max_discharge_rate_w, rtg_max_w=self.rtg_max_w,
            rtg_max_charge_rate_w=self.rtg_max_charge_rate_w, rtg_max_discharge_rate_w=self.rtg_max_discharge_rate_w,
        )

    def der_ratings(self, kind: DeviceKind) -> Any:
        return domain_curves.DerRatings(
            kind=kind,
            max_w=self.set_max_w if self.set_max_w is not None else self.rtg_max_w,
            max_charge_w=self.set_max_charge_rate_w if self.set_max_charge_rate_w is not None else self.rtg_max_charge_rate_w,
            max_discharge_w=(self.set_max_discharge_rate_w if self.set_max_discharge_rate_w is not None
                             else self.rtg_max_discharge_rate_w),
            max_wh=self.set_max_wh if self.set_max_wh is not None else self.rtg_max_wh,
            soc_percent=self.soc_percent,
            reserve_percent=self.reserve_percent,
            availability_s=self.availability_s,
        )


def ratings_of(session: Session, device_id: int, kind: DeviceKind) -> Any:
    stmt = _with_ratings(select(Device.id, *_RATINGS_COLUMNS), Device.id).where(Device.id == device_id)
    row = session.execute(stmt).one()
    return DeviceData(*row[1:]).der_ratings(kind)


def offer_curve(offer: Any, kind: DeviceKind, ratings: Any, program: Program, window: tuple[int, int],
                now: int) -> tuple[BidCurve, float, str]:
    """(reduction curve, baseline kW, source) for one device; ValueError says what is wrong."""
    start, end = window
    if offer is None:
        curve = domain_curves.default_curve(ratings, program.price_floor, program.price_cap, end - start)
        return curve, float(ratings.baseline_kw or 0.0), "default"
    if not isinstance(offer, dict) or len(offer) != 1 or next(iter(offer)) not in ("power", "intervals", "objective"):
        raise ValueError('an offer is {"power": [[price, kW], …]}, {"intervals": [[[price, kW], …], …]} or '
                         '{"objective": {…}}')
    if "intervals" in offer:  # interval 0's curve here; every interval's in interval_curves
        curves = interval_curves(offer, ratings)
        return curves[0][0], curves[0][1], "intervals"
    if "power" in offer:
        points = offer["power"]
        if not isinstance(points, list) or not points:
            raise ValueError("power must be a non-empty list of [price, kW] points")
        domain_curves.check_within_ratings(points, ratings)
        curve, baseline = domain_curves.power_to_reduction(points)
        return curve, float(baseline), "power"
    curve = domain_curves.objective_curve(offer["objective"], ratings, clock.utc(start), clock.utc(end), clock.utc(now))
    return curve, float(ratings.baseline_kw or 0.0), "objective"


def interval_curves(offer: dict[str, Any], ratings: Any) -> list[tuple[BidCurve, float]]:
    """(reduction curve, baseline kW) per interval of an {"intervals": […]} offer
    (server.services.flex.offers.interval_offer); ValueError says what is wrong."""
    curves = offer["intervals"]
    if not isinstance(curves, list) or not curves:
        raise ValueError("intervals must be a non-empty list of power curves")
    out = []
    for points in curves:
        domain_curves.check_within_ratings(points, ratings)
        curve, baseline = domain_curves.power_to_reduction(points)
        out.append((curve, float(baseline)))
    if any(b != out[0][1] for _, b in out):
        raise ValueError("every interval's curve must start at the same baseline power")
    return out


@dataclass
class Fleet:
    """The devices of one clearing, column-wise, in device id order. Fleets repeat curves (one
    default curve per rating set, one offer per tariff): `distinct` holds each curve once and
    `curve_ids[i]` is device i's; `curves`, `baselines`, `sources` and `ratings` per device share
    those objects. A distinct curve that changes from interval to interval (an "intervals" offer)
    has its curve per interval in `by_interval[curve id]`; `curves` holds interval 0's."""

    enrollment_ids: list[int] = field(default_factory=list)
    device_ids: list[int] = field(default_factory=list)
    kinds: list[DeviceKind] = field(default_factory=list)
    node_rows: list[int | None] = field(default_factory=list)
    curves: list[BidCurve] = field(default_factory=list)
    baselines: list[float] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    ratings: list[ControlRatings] = field(default_factory=list)
    curve_ids: list[int] = field(default_factory=list)
    distinct: list[BidCurve] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    by_interval: dict[int, list[BidCurve]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.device_ids)

    @property
    def varies(self) -> bool:
        """Whether some device's curve changes from interval to interval."""
        return bool(self.by_interval)

    def _distinct_at(self, interval: int | None) -> list[BidCurve]:
        if interval is None or not self.by_interval:
            return self.distinct
        return [self.by_interval[c][min(interval, len(self.by_interval[c]) - 1)] if c in self.by_interval else curve
                for c, curve in enumerate(self.distinct)]

    def curve_at(self, i: int, interval: int | None) -> BidCurve:
        """Device i's curve in interval `interval` of the window (interval k clears curve k of an
        "intervals" offer, the last one beyond)."""
        return self._distinct_at(interval)[self.curve_ids[i]]

    def book(self, interval: int | None = None) -> CurveBook:
        """The fleet's CurveBook (for interval `interval` of the window when curves vary): each
        distinct curve validated once, then one row per device."""
        distinct = self._distinct_at(interval)
        ids = np.asarray(self.curve_ids, dtype=np.intp)
        return CurveBook.from_curves(distinct).take(ids)


def gather(session: Session, row: store.FlexProgram, program: Program, window: tuple[int, int], now: int) -> Fleet:
    e = store.Enrollment
    stmt = _with_ratings(
        select(e.id, e.device_id, e.device_kind, e.grid_node_id, e.offer, *_RATINGS_COLUMNS)
        .join(Device, Device.id == e.device_id),
        e.device_id,
    ).where(e.program_id == row.id, e.state == EnrollmentState.ACTIVE.value, Device.enabled.is_(True)).order_by(e.device_id)
    fleet = Fleet()
    # what a device offers depends on its kind, offer and ratings only: build each combination once
    made: dict[tuple[Any, ...], tuple[Any, ...] | str] = {}
    for r in session.execute(stmt):
        key = (r.device_kind, r.offer, *r[5:])
        got = made.get(key)
        if got is None:
            got = made[key] = _make(fleet, key, program, window, now)
        if isinstance(got, str):
            fleet.skipped.append((r.device_id, got))
            continue
        kind, curve_id, curve, baseline, source, ratings = got
        fleet.enrollment_ids.append(r.id)
        fleet.device_ids.append(r.device_id)
        fleet.kinds.append(kind)
        fleet.node_rows.append(r.grid_node_id)
        fleet.curve_ids.append(curve_id)
        fleet.curves.append(curve)
        fleet.baselines.append(baseline)
        fleet.sources.append(source)
        fleet.ratings.append(ratings)
    return fleet


def _make(fleet: Fleet, key: tuple[Any, ...], program: Program, window: tuple[int, int], now: int) -> tuple[Any, ...] | str:
    """(kind, curve id, curve, baseline, source, control ratings) for one combination, or why not."""
    kind = DeviceKind(key[0])
    data = DeviceData(*key[2:])
    ratings = data.control_ratings()
    try:
        offer = json.loads(key[1]) if key[1] else None
        made = offer_curve(offer, kind, data.der_ratings(kind), program, window, now)
        per_interval = interval_curves(offer, data.der_ratings(kind)) if made[2] == "intervals" else []
        for curve, baseline in per_interval or [made[:2]]:
            _check_control(kind, (curve, baseline, made[2]), ratings)
    except ValueError as exc:
        return str(exc)
    fleet.distinct.append(made[0])
    if per_interval:
        fleet.by_interval[len(fleet.distinct) - 1] = [c for c, _ in per_interval]
    return kind, len(fleet.distinct) - 1, *made, ratings


def _check_control(kind: DeviceKind, made: tuple[BidCurve, float, str], ratings: ControlRatings) -> None:
    """Every setpoint the curve allows must be expressible as a control (raises ControlError)."""
    curve, baseline, _ = made
    for q in (curve.points[0][1], curve.points[-1][1]):
        control_for(kind, baseline + q, ratings)


def clear_fleet(session: Session, fleet: Fleet, requested_kw: float, price_cap: float,
                book: CurveBook | None = None) -> GridClearing:

    tree, index = grid_tree(session)
    nodes = np.array([-1 if n is None else index[n] for n in fleet.node_rows], dtype=np.intp)
    book = book if book is not None else fleet.book()
    return clear_with_grid(book, nodes, tree, requested_kw, price_cap)

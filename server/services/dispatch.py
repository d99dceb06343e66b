"""Publishing a program's peak windows: gather the enrolled devices' curves, clear, and write one
DERControl per device per interval — idempotently, in one transaction per window.

Steps for one window (`run_window`; programs.publishing decides whether and which):

1. Gather (`gather`): the program's active enrollments of enabled devices with what their DER
   reported (settings, ratings, state of charge, availability), one Core query. Each device's
   curve comes from its offer — a power curve (seed convention, kW < 0 = consumption) or an
   objective — or, with no offer, from its ratings (programs.curves). A device whose curve or
   control cannot be made (a rating missing, say) is left out and named in the outcome.
2. Clear (`clear_fleet`): one exact clearing per interval request, with grid-node adders and
   limits (programs.grid), under the program's price cap; infeasible requests clear best effort
   at the cap and say so.
3. Publish: per device and interval, power = baseline + cleared reduction, mapped to a control by
   its kind (programs.dispatch: opModFixedW, opModMaxLimW or opModTargetW), written as a DerEvent
   in the program's DERProgram (responseRequired 03, the program's randomizeStart), with its
   Clearing and Setpoint rows (curve snapshot, price seen) for audit and settlement.
4. Re-clearing writes revision n+1: its events supersede revision n's (same program, overlapping,
   same modes); revision-n events that nothing supersedes (a device left, changed kind, or the
   intervals changed) are cancelled. Nothing is ever deleted.

Idempotence: the window row is read FOR UPDATE (PostgreSQL; SQLite serialises writers) and its
state and input digest decide the action, in the same transaction that writes the result — so
running a job twice, or two processes racing, publishes once; a crash mid-publish leaves nothing
behind and the next run publishes.

The input digest covers what a clearing reads from the program's own records: the program's
version, its enrollments (count, ids, latest update) and the grid nodes (latest update). DER
status (state of charge) changes on every report and deliberately does not trigger re-clearing.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from programs import curves as domain_curves
from programs.clearing import BidCurve, CurveBook
from programs.dispatch import KIND_INDEX, MODES, ControlRatings, control_for, der_type_kind, fleet_controls
from programs.grid import GridClearing, clear_with_grid
from programs.kinds import DeviceKind
from programs.model import Program
from programs.publishing import Action, WindowState, decide, transition
from programs.windows import Window, windows_between
from server.db import der as der_db
from server.db import derp as der_store
from server.db import flex as store
from server.db.models import Device
from server.db.session import Database
from server.sep2 import codec
from server.sep2.der import ActivePower
from server.sep2.derp import DERControlBase
from server.sep2.identity import new_mrids
from server.services.der import DER_ID
from server.services.derp import RESPONSE_REQUIRED
from server.services.errors import Conflict, NotFound, check_text

# How far back planning looks, so a window that started while the server was down is still seen.
LOOKBACK_S = 2 * 86_400


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _iso(seconds: int | None) -> str | None:
    return None if seconds is None else _utc(seconds).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------------- planning


def program_of(row: store.FlexProgram) -> Program:
    return Program.from_dict(json.loads(row.spec))


def _windows(program: Program, now: int, horizon_s: int) -> list[Window]:
    return windows_between(program.window, _utc(now - LOOKBACK_S), _utc(now + horizon_s))


def plan_program(session: Session, row: store.FlexProgram, program: Program, now: int, *,
                 horizon_s: int = 7 * 86_400, replan: bool = False) -> list[tuple[int, str, int]]:
    """Make sure every window of the horizon has its row. With `replan` (the program changed),
    windows not yet started follow the new rule: their times move, and planned windows the rule no
    longer has are cancelled (published ones too, with their events)."""
    wanted = {w.key: w for w in _windows(program, now, horizon_s)}
    rows = {w.window_key: w for w in store.windows(session, row.id, since_end=now - LOOKBACK_S, limit=10_000)}
    out = []
    for key, w in wanted.items():
        start, end = int(w.start.timestamp()), int(w.end.timestamp())
        publish_at = int(program.publish_at(w).timestamp())
        wr = rows.get(key)
        if wr is None:
            if end <= now - LOOKBACK_S or start < row.created_time:
                continue  # long gone, or begun before the program existed: not the program's
            wr = store.FlexWindow(program_id=row.id, window_key=key, start=start, end=end, publish_at=publish_at,
                                  state=WindowState.PLANNED.value, revision=0, updated_time=now)
            session.add(wr)
        elif replan and wr.start > now and (wr.start, wr.end, wr.publish_at) != (start, end, publish_at):
            wr.start, wr.end, wr.publish_at, wr.updated_time = start, end, publish_at, now
        if wr.state == WindowState.PLANNED.value:
            out.append((row.id, key, publish_at))
    if replan:
        for key, wr in rows.items():
            if key not in wanted and wr.start > now and wr.state in ("planned", "published"):
                cancel_window_row(session, wr, now, "no longer a window of the program")
    session.flush()
    return out


def plan_windows(session: Session, now: int, horizon_s: int) -> list[tuple[int, str, int]]:
    """Rows for the windows of every active program in the horizon; the planned ones returned."""
    out: list[tuple[int, str, int]] = []
    for row in store.programs(session, active_only=True):
        out.extend(plan_program(session, row, program_of(row), now, horizon_s=horizon_s))
    return out


def input_digest(session: Session, row: store.FlexProgram) -> str:
    e = store.Enrollment
    n, ids, latest = session.execute(
        select(func.count(e.id), func.coalesce(func.sum(e.id), 0), func.coalesce(func.max(e.updated_time), 0))
        .where(e.program_id == row.id)
    ).one()
    g = store.GridNode
    nodes, node_latest = session.execute(
        select(func.count(g.id), func.coalesce(func.max(g.updated_time), 0))
    ).one()
    raw = f"{row.version}|{n}|{ids}|{latest}|{nodes}|{node_latest}"
    return hashlib.sha256(raw.encode()).hexdigest()


def due_windows(session: Session, now: int) -> list[tuple[int, str]]:
    """Windows to act on now: planned ones whose time has come, published ones not yet started
    whose inputs changed."""
    out = [(w.program_id, w.window_key) for w in store.due_windows(session, now, ("planned",))]
    digests: dict[int, str] = {}
    for w in store.due_windows(session, now, ("published",)):
        if w.start <= now:
            continue
        if w.program_id not in digests:
            row = session.get(store.FlexProgram, w.program_id)
            digests[w.program_id] = input_digest(session, row) if row else ""
        if digests[w.program_id] != w.input_digest:
            out.append((w.program_id, w.window_key))
    return out


# ---------------------------------------------------------------------------------- gather


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
    if not isinstance(offer, dict) or len(offer) != 1 or next(iter(offer)) not in ("power", "objective"):
        raise ValueError('an offer is {"power": [[price, kW], …]} or {"objective": {…}}')
    if "power" in offer:
        points = offer["power"]
        if not isinstance(points, list) or not points:
            raise ValueError("power must be a non-empty list of [price, kW] points")
        domain_curves.check_within_ratings(points, ratings)
        curve, baseline = domain_curves.power_to_reduction(points)
        return curve, float(baseline), "power"
    curve = domain_curves.objective_curve(offer["objective"], ratings, _utc(start), _utc(end), _utc(now))
    return curve, float(ratings.baseline_kw or 0.0), "objective"


@dataclass
class Fleet:
    """The devices of one clearing, column-wise, in device id order. Fleets repeat curves (one
    default curve per rating set, one offer per tariff): `distinct` holds each curve once and
    `curve_ids[i]` is device i's; `curves`, `baselines`, `sources` and `ratings` per device share
    those objects."""

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

    def __len__(self) -> int:
        return len(self.device_ids)

    def book(self) -> CurveBook:
        """The fleet's CurveBook: each distinct curve validated once, then one row per device."""
        return CurveBook.from_curves(self.distinct).take(np.asarray(self.curve_ids, dtype=np.intp))


def gather(session: Session, row: store.FlexProgram, program: Program, window: tuple[int, int], now: int) -> Fleet:
    e = store.Enrollment
    stmt = _with_ratings(
        select(e.id, e.device_id, e.device_kind, e.grid_node_id, e.offer, *_RATINGS_COLUMNS)
        .join(Device, Device.id == e.device_id),
        e.device_id,
    ).where(e.program_id == row.id, e.state == "active", Device.enabled.is_(True)).order_by(e.device_id)
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
        _check_control(kind, made, ratings)
    except ValueError as exc:
        return str(exc)
    fleet.distinct.append(made[0])
    return kind, len(fleet.distinct) - 1, *made, ratings


def _check_control(kind: DeviceKind, made: tuple[BidCurve, float, str], ratings: ControlRatings) -> None:
    """Every setpoint the curve allows must be expressible as a control (raises DispatchError)."""
    curve, baseline, _ = made
    for q in (curve.points[0][1], curve.points[-1][1]):
        control_for(kind, baseline + q, ratings)


# ---------------------------------------------------------------------------------- clearing


def clear_fleet(session: Session, fleet: Fleet, requested_kw: float, price_cap: float,
                book: CurveBook | None = None) -> GridClearing:
    from server.services.flex import grid_tree  # the grid as the domain sees it

    tree, index = grid_tree(session)
    nodes = np.array([-1 if n is None else index[n] for n in fleet.node_rows], dtype=np.intp)
    book = book if book is not None else fleet.book()
    return clear_with_grid(book, nodes, tree, requested_kw, price_cap)


# -------------------------------------------------------------------------------- publishing


@lru_cache(maxsize=65_536)
def _rendered(mode: str, value: int, multiplier: int | None) -> tuple[str, str]:
    """(DERControlBase XML, its mode list) for one control value; a fleet shares a few thousand."""
    if mode == "opModTargetW":
        base = DERControlBase(op_mod_target_w=ActivePower(value=value, multiplier=multiplier or 0))
    elif mode == "opModMaxLimW":
        base = DERControlBase(op_mod_max_lim_w=value)
    else:
        base = DERControlBase(op_mod_fixed_w=value)
    return codec.render(base).decode(), mode


def _curve_json(curve: BidCurve, baseline: float, source: str) -> str:
    return json.dumps({"source": source, "baseline_kw": baseline, "points": [list(p) for p in curve.points]})


def run_window(db: Database, program_id: int, window_key: str, now: int) -> dict[str, Any] | None:
    """Do what the window's state calls for at `now`; None when nothing is to be done."""
    started = time.perf_counter()
    with db.transaction() as s:
        w = store.window(s, program_id, window_key, for_update=True)
        row = s.get(store.FlexProgram, program_id)
        if w is None or row is None:
            return None
        if row.state != "active":
            return None
        digest = input_digest(s, row)
        action = decide(w.state, now=now, publish_at=w.publish_at, start=w.start, end=w.end,
                        inputs_changed=w.input_digest != digest)
        if action is None:
            return None
        if action is Action.MISS:
            w.state = transition(w.state, action).value
            w.note = f"not published before it ended (checked {_iso(now)})"
            w.updated_time = now
            return {"program_id": program_id, "window": window_key, "action": "missed",
                    "summary": f"program {row.name!r} window {window_key}: missed (ended before publishing)"}
        outcome = _publish(s, row, program_of(row), w, action, digest, now)
    outcome["seconds"] = round(time.perf_counter() - started, 3)
    return outcome


def _publish(s: Session, row: store.FlexProgram, program: Program, w: store.FlexWindow, action: Action,
             digest: str, now: int) -> dict[str, Any]:
    window = Window(_utc(w.start), _utc(w.end), datetime.fromisoformat(w.window_key).date()) \
        if _is_date(w.window_key) else None
    requests = program.requests(window) if window is not None else []
    fleet = gather(s, row, program, (w.start, w.end), now)
    book = fleet.book() if len(fleet) else None
    revision = w.revision + 1
    previous = _previous_events(s, w) if w.revision else {}
    new_keys: dict[tuple[int, int], tuple[str, int, int]] = {}
    intervals = []
    baselines = np.asarray(fleet.baselines, dtype=np.float64)
    description = _der_description(program)
    for idx, req in enumerate(requests):
        start, end = int(req.start.timestamp()), int(req.end.timestamp())
        result = clear_fleet(s, fleet, req.requested_kw, program.price_cap, book) if book is not None else None
        clearing = store.Clearing(
            window_id=w.id, revision=revision, interval_index=idx, start=start, end=end,
            requested_kw=req.requested_kw, price=float(result.price) if result else program.price_cap,
            quantity_kw=float(result.quantity) if result else 0.0, feasible=bool(result.feasible) if result else False,
            available_at_cap_kw=float(result.available_at_cap) if result else 0.0, devices=len(fleet),
            nodes=_nodes_json(result), created_time=now,
        )
        s.add(clearing)
        s.flush()
        if result is not None:
            _write_interval(s, row, program, fleet, baselines, result, clearing, idx, description, now, new_keys)
        intervals.append(_interval_view(clearing))
    _cancel_unsuperseded(s, previous, new_keys, now)
    w.state = transition(w.state, action).value
    w.revision = revision
    w.input_digest = digest
    w.published_time = now
    w.updated_time = now
    w.note = None
    s.flush()
    summary = "; ".join(
        f"{iv['requested_kw']:.1f} kW asked, {iv['quantity_kw']:.1f} kW cleared at {iv['price']:.4f}"
        + ("" if iv["feasible"] else " (INFEASIBLE: best effort at the cap)")
        for iv in intervals[:3]
    ) + (f" (+{len(intervals) - 3} intervals)" if len(intervals) > 3 else "")
    return {
        "program_id": row.id, "window": w.window_key, "action": action.value, "revision": revision,
        "devices": len(fleet), "skipped": [{"device_id": d, "reason": r} for d, r in fleet.skipped[:20]],
        "skipped_count": len(fleet.skipped), "intervals": intervals,
        "summary": f"program {row.name!r} window {w.window_key} rev {revision}: {len(fleet)} devices; {summary}",
    }


def _key(window_key: str) -> str:
    """A window key as given by an operator: printable, at most 32 characters (or Invalid)."""
    return check_text(window_key, "window key", 32) or ""


def _is_date(key: str) -> bool:
    try:
        datetime.fromisoformat(key)
        return True
    except ValueError:
        return False


def _der_description(program: Program) -> str:
    text = program.description or program.name
    while len(text.encode()) > 32:
        text = text[:-1]
    return text


def _nodes_json(result: GridClearing | None) -> str | None:
    if result is None or not result.node_prices:
        return None
    return json.dumps({
        name: {"price": result.node_prices[name], "reduction_kw": result.node_reductions.get(name),
               "binding": result.binding.get(name)}
        for name in result.node_prices
    } | ({"_violated": list(result.violated)} if result.violated else {}))


def _write_interval(s: Session, row: store.FlexProgram, program: Program, fleet: Fleet, baselines: np.ndarray,
                    result: GridClearing, clearing: store.Clearing, idx: int, description: str, now: int,
                    new_keys: dict[tuple[int, int], tuple[str, int, int]]) -> None:
    """One event and one setpoint row per device for one interval: controls mapped for the whole
    fleet at once, rows written at the driver's speed (server.db.bulk)."""
    reductions = np.asarray(result.setpoints, dtype=np.float64)
    powers = baselines + reductions
    codes = np.fromiter((KIND_INDEX[k] for k in fleet.kinds), dtype=np.int64, count=len(fleet))
    modes, values, mults = fleet_controls(codes, powers, fleet.ratings)
    mrids = new_mrids(len(fleet))
    randomize = program.randomize_start_s or None
    duration = clearing.end - clearing.start
    texts: dict[int, str] = {}
    events: list[tuple[Any, ...]] = []
    setpoints: list[tuple[Any, ...]] = []
    for i, (device_id, m, v, mu, red, pw, price) in enumerate(zip(
            fleet.device_ids, modes.tolist(), values.tolist(), mults.tolist(), reductions.tolist(), powers.tolist(),
            np.asarray(result.device_prices, dtype=np.float64).tolist())):
        base, mode = _rendered(MODES[m], v, mu)
        mrid = mrids[i]
        events.append((mrid, row.der_program_id, device_id, description, now, clearing.start, duration, randomize,
                       None, RESPONSE_REQUIRED, base, mode, None, False))
        cid = fleet.curve_ids[i]
        text = texts.get(cid)
        if text is None:
            text = texts[cid] = _curve_json(fleet.curves[i], fleet.baselines[i], fleet.sources[i])
        setpoints.append((clearing.id, device_id, fleet.enrollment_ids[i], red, pw, price, text, mrid))
        new_keys[(device_id, idx)] = (mode, clearing.start, clearing.end)
    der_store.insert_events(s, events)
    store.add_setpoints(s, setpoints)


def _interval_view(c: store.Clearing) -> dict[str, Any]:
    return {
        "interval": c.interval_index, "start": _iso(c.start), "end": _iso(c.end),
        "requested_kw": c.requested_kw, "price": c.price, "quantity_kw": c.quantity_kw,
        "feasible": c.feasible, "available_at_cap_kw": c.available_at_cap_kw, "devices": c.devices,
        "nodes": json.loads(c.nodes) if c.nodes else None,
    }


def _previous_events(s: Session, w: store.FlexWindow) -> dict[tuple[int, int], tuple[str, str, int, int]]:
    """(device, interval) → (event mRID, its modes, start, end) of the window's latest revision."""
    sp, cl, ev = store.Setpoint, store.Clearing, der_store.DerEvent
    rows = s.execute(
        select(sp.device_id, cl.interval_index, ev.mrid, ev.controls, cl.start, cl.end)
        .join(cl, cl.id == sp.clearing_id)
        .join(ev, ev.mrid == sp.event_mrid)
        .where(cl.window_id == w.id, cl.revision == w.revision, ev.cancelled_at.is_(None))
    )
    return {(r.device_id, r.interval_index): (r.mrid, r.controls, r.start, r.end) for r in rows}


def _cancel_unsuperseded(s: Session, previous: dict[tuple[int, int], tuple[str, str, int, int]],
                         new_keys: dict[tuple[int, int], tuple[str, int, int]], now: int) -> None:
    """Old events that no new event supersedes — none for the device and interval, other modes,
    or other times (a moved window: the old event would not even overlap the new one) — are
    cancelled."""
    doomed = [mrid for key, (mrid, modes, start, end) in previous.items()
              if new_keys.get(key) != (modes, start, end) and end > now]
    der_store.cancel_events(s, doomed, now)


# --------------------------------------------------------------------------------- cancelling


def cancel_window_row(session: Session, w: store.FlexWindow, now: int, note: str) -> None:
    """Cancel a window and every event it published that has not ended."""
    if w.state not in ("planned", "published"):
        return
    if w.end <= now:
        raise Conflict(f"window {w.window_key} has ended: there is nothing to cancel")
    if w.revision:
        previous = _previous_events(session, w)
        der_store.cancel_events(session, [m for (m, _modes, _s, end) in previous.values() if end > now], now)
    w.state = transition(w.state, Action.CANCEL).value
    w.note = note
    w.updated_time = now


def cancel_window(session: Session, program_id: int, window_key: str, now: int) -> dict[str, Any]:
    window_key = _key(window_key)
    w = store.window(session, program_id, window_key, for_update=True)
    if w is None:
        raise NotFound(f"program {program_id} has no window {window_key!r}")
    if w.state not in ("planned", "published"):
        raise Conflict(f"window {window_key} is {w.state}")
    cancel_window_row(session, w, now, "cancelled by the operator")
    return window_brief(w)


def cancel_device_events(session: Session, row: store.FlexProgram, device_id: int, now: int) -> None:
    """A device leaving a program: its events there that have not ended are cancelled."""
    ev = der_store.DerEvent
    mrids = session.scalars(
        select(ev.mrid).where(ev.program_id == row.der_program_id, ev.device_id == device_id,
                              ev.start + ev.duration > now, ev.cancelled_at.is_(None))
    ).all()
    der_store.cancel_events(session, list(mrids), now)


# ------------------------------------------------------------------------------------- views


def window_brief(w: store.FlexWindow) -> dict[str, Any]:
    return {
        "key": w.window_key, "start": _iso(w.start), "end": _iso(w.end), "publish_at": _iso(w.publish_at),
        "state": w.state, "revision": w.revision, "published": _iso(w.published_time), "note": w.note,
    }


def window_view(session: Session, program_id: int, window_key: str, *, top: int = 10) -> dict[str, Any]:
    window_key = _key(window_key)
    w = store.window(session, program_id, window_key)
    if w is None:
        raise NotFound(f"program {program_id} has no window {window_key!r}")
    view = window_brief(w)
    view["intervals"] = []
    for c in store.clearings(session, w.id, w.revision) if w.revision else []:
        iv = _interval_view(c)
        iv["top_setpoints"] = [
            {"device_id": p.device_id, "reduction_kw": p.reduction_kw, "power_kw": p.power_kw,
             "price": p.device_price, "event_mrid": p.event_mrid}
            for p in store.setpoints(session, c.id, limit=top, order_by_reduction=True)
        ]
        view["intervals"].append(iv)
    return view


def list_windows(session: Session, program_id: int, now: int, *, include_past: bool = False, limit: int = 50) -> list[dict[str, Any]]:
    if session.get(store.FlexProgram, program_id) is None:
        raise NotFound(f"no flexibility program {program_id}")
    rows = store.windows(session, program_id, since_end=None if include_past else now, limit=limit)
    out = []
    for w in rows:
        view = window_brief(w)
        cl = store.clearings(session, w.id, w.revision) if w.revision else []
        view["intervals"] = [_interval_view(c) for c in cl]
        out.append(view)
    return out


# ----------------------------------------------------------------------------------- dry run


@dataclass
class DryRun:
    """A clearing computed and not written: for the operator to look at before the real one."""

    program: Program
    window: store.FlexWindow
    fleet: Fleet
    book: CurveBook | None
    results: list[tuple[Any, GridClearing | None]]
    program_state: str = "active"

    def curve_points(self, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
        """The fleet's aggregate supply curve F(p) (no grid limits), sampled from its lowest
        breakpoint to the price cap, breakpoints included where there are few."""
        if self.book is None or not len(self.book):
            return np.zeros(0), np.zeros(0)
        lo = float(self.book.p_min)
        hi = max(float(self.program.price_cap), lo)
        grid = np.linspace(lo, hi, n)
        bps = np.unique(self.book.bp + self.book.p_min)
        if bps.size <= 2 * n:
            grid = np.unique(np.concatenate([grid, bps[(bps >= lo) & (bps <= hi)]]))
        return grid, np.array([self.book.F(float(p)) for p in grid])

    def plot_args(self) -> dict[str, Any]:
        """Arguments of server.services.plots.supply_curve_png for the interval asking the most."""
        prices, quantities = self.curve_points()
        req, result = max(self.results, key=lambda rr: rr[0].requested_kw) if self.results else (None, None)
        if req is None or result is None or not prices.size:
            raise NotFound("nothing to draw: no device of this program can take part in this window")
        return {
            "prices": prices, "quantities": quantities, "requested_kw": req.requested_kw,
            "price_cap": self.program.price_cap, "clearing_price": float(result.price),
            "cleared_kw": float(result.quantity), "feasible": bool(result.feasible),
            "title": f"{self.program.name}: window {self.window.window_key}, {len(self.fleet)} devices",
            "currency": self.program.currency,
        }

    def view(self, top: int = 10) -> dict[str, Any]:
        out = []
        for req, result in self.results:
            item: dict[str, Any] = {
                "start": req.start.isoformat(), "end": req.end.isoformat(), "requested_kw": req.requested_kw,
            }
            if result is not None:
                order = np.argsort(-np.asarray(result.setpoints), kind="stable")[:top]
                item.update(
                    price=float(result.price), quantity_kw=float(result.quantity), feasible=bool(result.feasible),
                    available_at_cap_kw=float(result.available_at_cap),
                    top_setpoints=[{"device_id": self.fleet.device_ids[i], "reduction_kw": float(result.setpoints[i]),
                                    "price": float(result.device_prices[i])} for i in order],
                )
            out.append(item)
        return {
            "program": self.program.name, "program_state": self.program_state,
            "window": self.window.window_key, "state": self.window.state,
            "devices": len(self.fleet), "skipped": [{"device_id": d, "reason": r} for d, r in self.fleet.skipped[:20]],
            "skipped_count": len(self.fleet.skipped), "intervals": out,
        }


def dry_run(session: Session, program_id: int, window_key: str | None, now: int) -> DryRun:
    """Clear a window without writing anything. With no key: the next window of the program that
    may still be published (planned or published, not ended), from its rows or, for a window not
    planned yet, from the program's rule."""
    row = session.get(store.FlexProgram, program_id)
    if row is None:
        raise NotFound(f"no flexibility program {program_id}")
    program = program_of(row)
    if window_key is None:
        w = _next_open_window(session, row, program, now)
        if w is None:
            raise NotFound(f"program {program_id} has no window in the coming week that may still be published")
    else:
        found = store.window(session, program_id, _key(window_key))
        if found is None:
            raise NotFound(f"program {program_id} has no window {window_key!r} (see its windows)")
        w = found
    window = Window(_utc(w.start), _utc(w.end), datetime.fromisoformat(w.window_key).date())
    fleet = gather(session, row, program, (w.start, w.end), now)
    book = fleet.book() if len(fleet) else None
    results = [(req, clear_fleet(session, fleet, req.requested_kw, program.price_cap, book) if book else None)
               for req in program.requests(window)]
    return DryRun(program, w, fleet, book, results, row.state)


def _next_open_window(session: Session, row: store.FlexProgram, program: Program, now: int) -> store.FlexWindow | None:
    rows = {w.window_key: w for w in store.windows(session, row.id, since_end=now, limit=50)}
    for w in _windows(program, now, 7 * 86_400):
        if w.end.timestamp() <= now:
            continue
        existing = rows.get(w.key)
        if existing is not None:
            if existing.state in (WindowState.PLANNED, WindowState.PUBLISHED):
                return existing
            continue
        start = int(w.start.timestamp())
        if start < row.created_time:
            continue
        # not planned yet: an unsaved row, so the dry run writes nothing
        return store.FlexWindow(program_id=row.id, window_key=w.key, start=start, end=int(w.end.timestamp()),
                                publish_at=int(program.publish_at(w).timestamp()), state=WindowState.PLANNED.value,
                                revision=0)
    return None

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
   its kind (programs.controls: opModFixedW, opModMaxLimW or opModTargetW), written as a DerEvent
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

import json
import time
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from programs.clearing import BidCurve
from programs.controls import KIND_INDEX, MODES, fleet_controls
from programs.grid import GridClearing
from programs.model import Program
from programs.publishing import Action, decide, transition
from programs.windows import Window
from server.db import derp as der_store
from server.db import flex as store
from server.db.session import Database
from server.sep2.identity import new_mrids
from server.services import clock, outbox
from server.services.sep2.derp import RESPONSE_REQUIRED
from server.services.sep2.mappers.derp import control_base_xml
from server.services.flex import envelopes
from server.services.flex.cancelling import cancel_unsuperseded, previous_events
from server.services.flex.gathering import Fleet, clear_fleet, gather
from server.services.flex.stored import program_of
from server.services.flex.windows import interval_view, is_date_key, input_digest


# --------------------------------------------------------------------------------- planning




# ---------------------------------------------------------------------------------- gather


# ---------------------------------------------------------------------------------- clearing


# -------------------------------------------------------------------------------- publishing


@lru_cache(maxsize=65_536)
def _rendered(mode: str, value: int, multiplier: int | None) -> tuple[str, str]:
    """(DERControlBase XML, its mode list) for one control value; a fleet shares a few thousand."""
    return control_base_xml(mode, value, multiplier), mode


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
            w.note = f"not published before it ended (checked {clock.iso(now)})"
            w.updated_time = now
            return {"program_id": program_id, "window": window_key, "action": "missed",
                    "summary": f"program {row.name!r} window {window_key}: missed (ended before publishing)"}
        outcome = _publish(s, row, program_of(row), w, action, digest, now)
    outcome["seconds"] = round(time.perf_counter() - started, 3)
    return outcome


def _publish(s: Session, row: store.FlexProgram, program: Program, w: store.FlexWindow, action: Action,
             digest: str, now: int) -> dict[str, Any]:
    window = Window(clock.utc(w.start), clock.utc(w.end), datetime.fromisoformat(w.window_key).date()) \
        if is_date_key(w.window_key) else None
    requests = program.requests(window) if window is not None else []
    if program.envelope is not None:  # limits for every member, nothing to clear (services/flex/envelopes)
        return _publish_envelope(s, row, program, w, action, digest, requests, now)
    fleet = gather(s, row, program, (w.start, w.end), now)
    book = fleet.book() if len(fleet) else None
    revision = w.revision + 1
    previous = previous_events(s, w) if w.revision else {}
    new_keys: dict[tuple[int, int], tuple[str, int, int]] = {}
    intervals = []
    baselines = np.asarray(fleet.baselines, dtype=np.float64)
    description = _der_description(program)
    for idx, req in enumerate(requests):
        start, end = int(req.start.timestamp()), int(req.end.timestamp())
        if book is not None and fleet.varies:  # some device offers a curve per interval
            book = fleet.book(idx)
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
        intervals.append(interval_view(clearing))
    cancel_unsuperseded(s, previous, new_keys, now, program_id=row.id)
    w.state = transition(w.state, action).value
    w.revision = revision
    w.input_digest = digest
    w.published_time = now
    w.updated_time = now
    w.note = None
    s.flush()
    outbox.record(s, outbox.WindowPublished(row.id, w.window_key, revision, action is Action.REPUBLISH), now)
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


def _publish_envelope(s: Session, row: store.FlexProgram, program: Program, w: store.FlexWindow, action: Action,
                      digest: str, requests: list[Any], now: int) -> dict[str, Any]:
    """An envelope program's window (programs.envelopes): one DERControl per member device and
    interval with the site's limits; the window's state, revision and facts as for a clearing."""
    revision = w.revision + 1
    previous = previous_events(s, w) if w.revision else {}
    clearings, devices = envelopes.publish(s, row, program, w, requests, revision, previous,
                                           _der_description(program), now)
    w.state = transition(w.state, action).value
    w.revision, w.input_digest, w.published_time, w.updated_time, w.note = revision, digest, now, now, None
    s.flush()
    outbox.record(s, outbox.WindowPublished(row.id, w.window_key, revision, action is Action.REPUBLISH), now)
    env = program.envelope
    limits = ", ".join(f"{name} ≤ {kw:g} kW" for name, kw in (("export", env.export_limit_kw), ("import", env.import_limit_kw))
                       if kw is not None) if env is not None else ""
    return {
        "program_id": row.id, "window": w.window_key, "action": action.value, "revision": revision,
        "devices": devices, "skipped": [], "skipped_count": 0, "intervals": [interval_view(c) for c in clearings],
        "summary": f"program {row.name!r} window {w.window_key} rev {revision}: envelope {limits} per site "
                   f"published to {devices} devices",
    }


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
            text = texts[cid] = _curve_json(fleet.curve_at(i, idx), fleet.baselines[i], fleet.sources[i])
        setpoints.append((clearing.id, device_id, fleet.enrollment_ids[i], red, pw, price, text, mrid))
        new_keys[(device_id, idx)] = (mode, clearing.start, clearing.end)
    der_store.insert_events(s, events)
    store.add_setpoints(s, setpoints)
    outbox.record_controls_from(s, outbox.ControlCreated, row.id, select(store.Setpoint.device_id, store.Setpoint.event_mrid)
                                .where(store.Setpoint.clearing_id == clearing.id), now)


# --------------------------------------------------------------------------------- cancelling




# ------------------------------------------------------------------------------------- views


# ----------------------------------------------------------------------------------- dry run



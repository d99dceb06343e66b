"""Publishing an envelope program's window (programs.envelopes): every member device gets one
DERControl per interval whose DERControlBase carries the site's limits as csipaus:opModExpLimW /
opModImpLimW — no gathering of curves, no clearing.

Called by services.flex.publishing.run_window in its transaction, after the window's state table
chose PUBLISH or REPUBLISH (so idempotence, revisions and supersession are the same as for
reductions). What it writes, so the rest of the flexibility context reads it as it reads a
clearing:

* a `flex_clearings` row per interval: requested_kw 0 (nothing is cleared), quantity_kw 0,
  price = the program's rate per kWh curtailed, feasible, devices = the members;
* a DerEvent per device and interval in the program's DERProgram (responseRequired 03, the
  program's randomizeStart) with the limits;
* a `flex_setpoints` row per device and interval: reduction 0, power_kw = the export limit
  (seed sign: export positive; −import limit when only imports are limited), price = the rate,
  and as its "curve" the published envelope and the device's site (connection point id);
* the ControlCreated facts, and the ControlCancelled ones for the previous revision's events no
  new event supersedes (services.flex.cancelling).
"""

from __future__ import annotations

import json
from datetime import tzinfo
from typing import Any

import numpy as np

from sqlalchemy import select
from sqlalchemy.orm import Session

from programs.enrollment import State as EnrollmentState
from programs.envelopes import limit_controls, published_kw
from programs.model import Program
from server.db import derp as der_store
from server.db import flex as store
from server.db import metering
from server.db.models import Device
from server.sep2.der import ActivePower
from server.sep2.derp import DERControlBase
from server.sep2.identity import new_mrids
from server.services import clock, outbox
from server.services.errors import Conflict, NotFound
from server.services.flex.cancelling import cancel_unsuperseded
from server.services.sep2.derp import RESPONSE_REQUIRED
from server.services.sep2.mappers.derp import control_modes, der_control_base_xml

_FIELDS = {"opModImpLimW": "op_mod_imp_lim_w", "opModExpLimW": "op_mod_exp_lim_w"}


def members(session: Session, program_id: int) -> list[tuple[int, int, str | None]]:
    """(enrollment id, device id, connection point id) of the program's active enrollments of
    enabled devices, by device id: the devices an envelope window is published to."""
    e = store.Enrollment
    rows = session.execute(
        select(e.id, e.device_id, Device.connection_point_id).join(Device, Device.id == e.device_id)
        .where(e.program_id == program_id, e.state == EnrollmentState.ACTIVE.value, Device.enabled.is_(True))
        .order_by(e.device_id)
    )
    return [(r[0], r[1], r[2]) for r in rows]


def control_base(program: Program) -> tuple[str, str]:
    """(DERControlBase XML, its modes) carrying the program's envelope."""
    assert program.envelope is not None
    base = DERControlBase(**{_FIELDS[mode]: ActivePower(value=v, multiplier=m)
                             for mode, (v, m) in limit_controls(program.envelope).items()})
    return der_control_base_xml(base), control_modes(base)


def publish(s: Session, row: store.FlexProgram, program: Program, w: store.FlexWindow, requests: list[Any],
            revision: int, previous: dict[tuple[int, int], tuple[str, str, int, int]], description: str,
            now: int) -> tuple[list[store.Clearing], int]:
    """Write revision `revision` of an envelope window (module docstring): its clearing rows (one
    per request interval) and how many devices got controls. The caller moves the window's state."""
    assert program.envelope is not None
    people = members(s, row.id)
    base, modes = control_base(program)
    env = published_kw(program.envelope)
    limit_kw = env.export_limit_kw if env.export_limit_kw is not None else -(env.import_limit_kw or 0.0)
    rate = float(program.incentive.rate_per_kwh or 0.0)
    randomize = program.randomize_start_s or None
    new_keys: dict[tuple[int, int], tuple[str, int, int]] = {}
    clearings = []
    for idx, req in enumerate(requests):
        start, end = int(req.start.timestamp()), int(req.end.timestamp())
        clearing = store.Clearing(
            window_id=w.id, revision=revision, interval_index=idx, start=start, end=end, requested_kw=0.0,
            price=rate, quantity_kw=0.0, feasible=True, available_at_cap_kw=0.0, devices=len(people),
            nodes=None, created_time=now,
        )
        s.add(clearing)
        s.flush()
        clearings.append(clearing)
        if not people:
            continue
        mrids = new_mrids(len(people))
        events, setpoints = [], []
        for i, (enrollment_id, device_id, site) in enumerate(people):
            events.append((mrids[i], row.der_program_id, device_id, description, now, start, end - start,
                           randomize, None, RESPONSE_REQUIRED, base, modes, None, False))
            curve = json.dumps({"source": "envelope", "envelope": env.to_dict(), "connection_point_id": site})
            setpoints.append((clearing.id, device_id, enrollment_id, 0.0, limit_kw, rate, curve, mrids[i]))
            new_keys[(device_id, idx)] = (modes, start, end)
        der_store.insert_events(s, events)
        store.add_setpoints(s, setpoints)
        outbox.record_controls_from(s, outbox.ControlCreated, row.id,
                                    select(store.Setpoint.device_id, store.Setpoint.event_mrid)
                                    .where(store.Setpoint.clearing_id == clearing.id), now)
    cancel_unsuperseded(s, previous, new_keys, now, program_id=row.id)
    return clearings, len(people)


def window_export(session: Session, program_id: int, window_key: str, *, margin_s: int = 300) -> dict[str, Any]:
    """What the sites of an envelope window exported, from their mirrored readings, from
    `margin_s` before it to `margin_s` after: {"start", "end", "limit_kw", "device_ids", "times"
    (reading starts, UTC seconds), "export_kw" (devices × times, None = no reading)}."""
    row = session.get(store.FlexProgram, program_id)
    w = store.window(session, program_id, window_key)
    if row is None or w is None:
        raise NotFound(f"program {program_id} has no window {window_key!r}")
    program = Program.from_dict(json.loads(row.spec))
    if program.envelope is None or program.envelope.export_limit_kw is None:
        raise Conflict(f"program {program_id} has no export envelope")
    if not w.revision:
        raise Conflict(f"window {window_key} was not published")
    clearings = store.clearings(session, w.id, w.revision)
    devices = sorted(set(session.scalars(select(store.Setpoint.device_id)
                                         .where(store.Setpoint.clearing_id.in_([c.id for c in clearings])))))
    series = [metering.load_series(session, d, w.start - margin_s, w.end + margin_s) for d in devices]
    times = sorted({int(t) for starts, _ in series for t in starts.tolist()})
    at = {t: k for k, t in enumerate(times)}
    export = np.full((len(devices), len(times)), np.nan)
    for i, (starts, watts) in enumerate(series):
        for t, v in zip(starts.tolist(), watts.tolist()):
            export[i, at[int(t)]] = -v / 1000.0  # the meter's import-positive W → export kW
    return {"start": w.start, "end": w.end, "limit_kw": published_kw(program.envelope).export_limit_kw,
            "device_ids": devices, "times": times,
            "export_kw": [[None if np.isnan(x) else round(float(x), 6) for x in r] for r in export]}


def window_export_png(session: Session, program_id: int, window_key: str, *, tz: tzinfo | None = None,
                      margin_s: int = 300) -> bytes:
    """`window_export` drawn (services.flex.plots.envelope_png): each site's export, the highest,
    and the envelope's limit over the window."""
    from server.services.flex.plots import envelope_png

    got = window_export(session, program_id, window_key, margin_s=margin_s)
    row = session.get(store.FlexProgram, program_id)
    data = np.array([[np.nan if x is None else x for x in r] for r in got["export_kw"]], dtype=np.float64)
    return envelope_png([clock.utc(t) for t in got["times"]], data.reshape(len(got["device_ids"]), len(got["times"])),
                        limit_kw=got["limit_kw"], start=clock.utc(got["start"]), end=clock.utc(got["end"]),
                        title=f"{row.name}: export envelope, window {window_key}", tz=tz)

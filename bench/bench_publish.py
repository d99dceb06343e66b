#!/usr/bin/env python
"""End-to-end publish benchmark: N enrolled devices, one peak window cleared and written, then the
first poll of a device's DERControlList — on SQLite or PostgreSQL, in one process.

Target (the DER issue): clear + write + first poll sees its control, for 100,000 enrolled devices,
in at most 20 s on each database.

What one run does (every loop is bounded; nothing touches the network):

  1. A fresh database migrated by the project's own migrations (server.bootstrap.prepare →
     server.db.migrate.upgrade): SQLite in a temporary home (WAL), or with --postgres URL a private
     database created on that server (127.0.0.1 only) and dropped at the end.
  2. N EndDevices. Three have certificates (a battery, an EV charger, a load: the pollers) and are
     registered and given their DER documents the way a device does it — service registration and
     PUTs of DERCapability, DERSettings (and DERStatus for the battery) through the Flask app. The
     other N−3 are bulk-inserted with Core (one executemany per 10,000 rows) in domain terms: the
     same `devices` columns `register_out_of_band` writes, and the same DER rows `der.put` writes
     (the canonical document rendered by the codec plus its SI columns, computed by the service's
     own column functions). The stored rows of the three real devices are compared with what the
     bulk path would have written for them.
     Mix: 50 % batteries (3 models; DERStatus with a per-device state of charge; no offer: the
     default curve from their ratings), 30 % EV chargers (3 models; a power-curve offer, 30
     variants), 20 % loads (3 models; a power-curve offer, 30 variants).
  3. Grid: a substation and four feeders (server.services.flex.programs.put_grid_node); feeder-3 has a
     forward-flow limit that binds (its devices must deliver more than the fleet average); 5 % of
     the devices sit behind no node. A program (server.services.flex.programs.create_program): every day,
     UTC, a 2 h window starting about 30 min from now, lead time 1 h (so it is due now),
     requested_kw = --kw-per-device × N, one interval (or --interval-s).
  4. Enrollment: the first --service-enrollments devices (the three pollers included) through
     server.services.flex.programs.enroll, timed per device; then every other device but the last
     --late-enrollments in bulk with Core inserts matching what enroll writes (an `enrollments` row
     in state active and a `der_program_members` row for the program's DERProgram); then the last
     ones through enroll again, to show what one enrollment costs once the program is full (enroll
     reads every member of the program to add one: see the report). A service row and a bulk row are
     compared column by column. Then ANALYZE (a database that grew to this size has statistics).
  5. Publish, timed: server.services.flex.publishing.run_window(db, program_id, window_key, now) at now
     (publish_at <= now < start). Phases are timed by thin wrappers installed on the publishing
     and gathering modules' names for this run only (inclusive wall times; nested phases overlap):
     input_digest, gather (and inside it curve making), CurveBook.from_curves, clear_fleet,
     _write_interval (and inside it control_for, _rendered, new_mrid, _curve_json, insert_events,
     add_setpoints), and the commit. With --profile the run is under cProfile instead (no wrappers;
     slower, not comparable) and the top functions are printed and stored.
     Also timed afterwards, alone: the gather query's SELECT + fetchall.
  6. First poll: each poller GETs /edev/{id}/derp/{p}/derc?l=10 through the real app
     (server.app.create_app, test client, certificate in the proxy header as behind nginx), after
     one warm-up GET /edev/{id} (not cached for the DERControlList). The answer must list that
     device's event (the mRID recorded in its setpoint) with the expected control, computed here
     from the setpoint's power and the device's rating (opModFixedW in hundredths of a percent of
     setMaxDischargeRateW / setMaxChargeRateW, rounded half away from zero; opModTargetW within half
     a unit of the power).
  7. Prints a table and writes bench/results/publish-<UTC timestamp>.json.

End-to-end = run_window (clear + write + commit) + the battery's first poll.

Examples:
    .venv/bin/python bench/bench_publish.py --quick                 # 2,000 devices, SQLite
    .venv/bin/python bench/bench_publish.py                         # 100,000 devices, SQLite
    .venv/bin/python bench/bench_publish.py --postgres postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/bench_publish.py --profile               # where the time goes
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import os
import pstats
import random
import resource
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchlib import PgDatabase, TimedDatabase, Timers, clean_up, machine_info  # noqa: E402
CHUNK = 10_000
TARGET_S = 20.0
ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

# (rtgMaxW, rtgMaxChargeRateW, rtgMaxDischargeRateW, rtgMaxWh, setMax(Dis)ChargeRateW) in W / Wh
BATTERIES = [(5000, 5000, 5000, 13500, 5000), (7600, 7600, 7600, 20000, 7000), (3300, 3300, 3300, 10000, 3300)]
EV_CHARGERS = [7200, 11000, 3700]  # W: rtgMaxW = rtgMaxChargeRateW = setMaxW = setMaxChargeRateW
LOADS = [4500, 4000, 1500]  # W: heat pump, water heater, pool pump
MODES = {"battery": "00100083", "ev_charger": "00000081", "load": "00400000"}  # DERControlType bits
DER_TYPES = {"battery": 80, "ev_charger": 82, "load": 0}
FEEDERS = ["feeder-1", "feeder-2", "feeder-3", "feeder-4"]
LIMITED = "feeder-3"


def _say(msg: str) -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------------------ the fleet


def _half_away(num: int, den: int) -> int:
    """round(num / den) half away from zero, in integers (den > 0)."""
    q = (2 * abs(num) + den) // (2 * den)
    return q if num >= 0 else -q


class Fleet:
    """What each device is (kind, model, state of charge, offer, grid node), decided up front."""

    def __init__(self, n: int, seed: int):
        rng = random.Random(seed)
        self.kinds: list[str] = []
        self.models: list[int] = []
        self.soc: list[int | None] = []  # hundredths of a percent (PerCent)
        self.offers: list[dict[str, Any] | None] = []
        self.nodes: list[str | None] = []
        for i in range(n):
            kind = ("battery", "ev_charger", "load")[i] if i < 3 else rng.choices(
                ("battery", "ev_charger", "load"), weights=(50, 30, 20))[0]
            model = rng.randrange(3)
            self.kinds.append(kind)
            self.models.append(model)
            self.soc.append(rng.randrange(2000, 9501) if kind == "battery" else None)
            k = rng.randrange(10)
            if kind == "ev_charger":
                r = EV_CHARGERS[model] / 1000
                a = round(0.04 + 0.01 * k, 2)
                self.offers.append({"power": [[a, -r], [round(a + 0.10, 2), -r / 2], [round(a + 0.25, 2), 0.0]]})
            elif kind == "load":
                p = LOADS[model] / 1000
                b = round(0.08 + 0.01 * k, 2)
                self.offers.append({"power": [[b, -p], [round(b + 0.15, 2), -p / 2]]})
            else:
                self.offers.append(None)  # the default curve from ratings
            self.nodes.append(None if rng.random() < 0.05 else FEEDERS[rng.randrange(4)])

    def documents(self, i: int, now: int) -> list[Any]:
        """The DER documents device i PUTs: DERCapability, DERSettings (and DERStatus)."""
        from server.sep2.der import (ActivePower, DERCapability, DERSettings, DERStatus,
                                     StateOfChargeStatusType, WattHour)

        kind, m = self.kinds[i], self.models[i]

        def w(v: int) -> ActivePower:
            return ActivePower(multiplier=0, value=v)

        if kind == "battery":
            rtg, chg, dis, wh, setc = BATTERIES[m]
            cap = DERCapability(modes_supported=MODES[kind], type=DER_TYPES[kind], rtg_max_w=w(rtg),
                                rtg_max_charge_rate_w=w(chg), rtg_max_discharge_rate_w=w(dis),
                                rtg_max_wh=WattHour(multiplier=1, value=wh // 10))
            settings = DERSettings(modes_enabled=MODES[kind], set_grad_w=100, set_max_w=w(rtg),
                                   set_max_charge_rate_w=w(setc), set_max_discharge_rate_w=w(setc),
                                   set_max_wh=WattHour(multiplier=1, value=wh // 10), updated_time=now - 3600)
            status = DERStatus(reading_time=now - 60,
                               state_of_charge_status=StateOfChargeStatusType(date_time=now - 60, value=self.soc[i]))
            return [cap, settings, status]
        rating = EV_CHARGERS[m] if kind == "ev_charger" else LOADS[m]
        charge = w(rating) if kind == "ev_charger" else None
        cap = DERCapability(modes_supported=MODES[kind], type=DER_TYPES[kind], rtg_max_w=w(rating),
                            rtg_max_charge_rate_w=charge)
        settings = DERSettings(modes_enabled=MODES[kind], set_grad_w=100, set_max_w=w(rating),
                               set_max_charge_rate_w=charge, updated_time=now - 3600)
        return [cap, settings]

    def control_rating_w(self, i: int, power_kw: float) -> int:
        """The W the control's percentage is of (opModFixedW): discharge rate for s > 0, charge rate
        for s < 0 (the 2030.5 reading, independent of programs.controls)."""
        kind, m = self.kinds[i], self.models[i]
        if kind == "battery":
            return BATTERIES[m][4]
        if kind == "ev_charger":
            return EV_CHARGERS[m]
        return LOADS[m]


def der_rows(device_id: int, docs: list[Any], now: int) -> list[tuple[Any, dict[str, Any]]]:
    """What server.services.sep2.der.put stores for each document: (table, row), without its checks."""
    from server.services.sep2 import der

    out = []
    for doc in docs:
        table, values = der.stored_row(device_id, der.DER_ID, doc, now)
        out.append((table, {c.name: values.get(c.name) for c in table.__table__.columns}))
    return out


# ------------------------------------------------------------------------------ the bench


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.n = args.devices
        self.tmp = Path(tempfile.mkdtemp(prefix="derflex-bench-publish-"))
        self.pg = PgDatabase(args.postgres) if args.postgres else None
        self.result: dict[str, Any] = {
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "machine": machine_info(("Flask", "SQLAlchemy", "numpy", "psycopg", "lxml")),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "database": "postgresql" if self.pg else "sqlite",
        }
        self.steps: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.steps[name] = round(time.perf_counter() - t0, 3)

    def _get(self, device: int, path: str) -> Any:
        return self.client.get(path, headers=self.headers[device], environ_base={"REMOTE_ADDR": "127.0.0.1"})

    def _put(self, device: int, path: str, body: bytes) -> Any:
        return self.client.put(path, data=body, content_type="application/sep+xml", headers=self.headers[device],
                               environ_base={"REMOTE_ADDR": "127.0.0.1"})

    # ---------------------------------------------------------------------------- set-up
    def setup(self) -> None:
        from server.app import create_app
        from server.bootstrap import prepare
        from server.config import Settings
        from server.db import migrate

        if self.pg is not None:
            self.pg.create()
        self.settings = Settings(home=self.tmp, proxy_mode=True, database_url=self.pg.url if self.pg else "",
                                 response_cache_seconds=300)
        with self.step("migrate"):
            self.db = prepare(self.settings, say=lambda _m: None)
        assert migrate.current_revision(self.db.engine) == migrate.head_revision()
        self.app = create_app(self.settings, self.db)
        self.client = self.app.test_client()
        self.fleet = Fleet(self.n, self.args.seed)
        self.now0 = int(time.time())
        _say(f"[{self.result['database']}] database at {self.settings.db_url.split('@')[-1]} migrated to "
             f"{migrate.head_revision()} in {self.steps['migrate']} s; {self.n:,} devices to make")

    def devices(self) -> None:
        from sqlalchemy import insert, select

        from server.db.models import Device
        from server.pki import DevPKI
        from server.sep2.identity import sfdi_from_lfdi
        from server.services.sep2 import edev

        now = self.now0
        with self.step("devices"):
            creds = DevPKI(self.settings.certs_dir).issue_many(["poll-battery", "poll-ev", "poll-load"])
            with self.db.transaction() as s:
                self.pollers = [edev.register_out_of_band(s, c.lfdi, now, label=c.name).id for c in creds]
            self.headers = {}
            for d, c in zip(self.pollers, creds, strict=True):
                pem = c.cert_path.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
                self.headers[d] = {self.settings.proxy_cert_header: quote(pem)}
            rng = random.Random(self.args.seed + 1)
            taken = {c.lfdi for c in creds}
            lfdis: list[str] = []
            while len(lfdis) < self.n - 3:
                lfdi = f"{rng.getrandbits(160):040X}"
                if lfdi not in taken:
                    taken.add(lfdi)
                    lfdis.append(lfdi)
            with self.db.transaction() as s:
                for k in range(0, len(lfdis), CHUNK):
                    s.execute(insert(Device), [
                        {"lfdi": lfdi, "sfdi": sfdi_from_lfdi(lfdi), "enabled": True, "post_rate": None,
                         "changed_time": now, "registered_time": now, "registered_by": edev.OPERATOR,
                         "aggregator_lfdi": None, "pin": None, "pin_time": None, "label": None}
                        for lfdi in lfdis[k:k + CHUNK]])
                ids = list(s.scalars(select(Device.id).where(Device.id.notin_(self.pollers)).order_by(Device.id)))
        self.ids = self.pollers + ids  # fleet index i -> device id
        assert len(self.ids) == self.n
        _say(f"  {self.n:,} EndDevices (3 through the service, {self.n - 3:,} bulk) in {self.steps['devices']} s")

    def der_documents(self) -> None:
        from sqlalchemy import insert

        from server.db import der as der_db
        from server.sep2 import codec, uris
        from server.services.sep2.der import DER_ID

        now = self.now0
        templates = {"DERCapability": uris.DERCAP, "DERSettings": uris.DERG, "DERStatus": uris.DERS}
        with self.step("der_documents"):
            for i, d in enumerate(self.pollers):  # as a device does it: PUT through the app
                for doc in self.fleet.documents(i, now):
                    path = uris.href(templates[type(doc).__name__], edev_id=d, der_id=DER_ID)
                    resp = self._put(d, path, codec.render(doc))
                    if resp.status_code != 204:
                        raise RuntimeError(f"PUT {path}: {resp.status_code} {resp.headers.get('X-Error-Detail')}")
            rows: dict[Any, list[dict[str, Any]]] = defaultdict(list)
            for i in range(3, self.n):
                for table, row in der_rows(self.ids[i], self.fleet.documents(i, now), now):
                    rows[table].append(row)
            with self.db.transaction() as s:
                for table, values in rows.items():
                    for k in range(0, len(values), CHUNK):
                        s.execute(insert(table), values[k:k + CHUNK])
        # the bulk path writes exactly what the PUTs wrote (received_time aside)
        with self.db.read() as conn:
            for i, d in enumerate(self.pollers):
                for table, want in der_rows(d, self.fleet.documents(i, now), now):
                    got = conn.execute(table.__table__.select().where(table.device_id == d)).mappings().one()
                    diff = {k: (got[k], v) for k, v in want.items() if k != "received_time" and got[k] != v}
                    if diff:
                        raise RuntimeError(f"bulk DER row differs from the PUT one for {table.__name__}: {diff}")
        n_rows = sum(len(v) for v in rows.values()) + sum(len(self.fleet.documents(i, now)) for i in range(3))
        del rows
        assert der_db  # imported for the tables' registration
        _say(f"  {n_rows:,} DER documents (3 devices by PUT, the rest bulk) in {self.steps['der_documents']} s")

    def program(self) -> None:
        from server.services.flex import grid_nodes, programs as flex

        now = self.now0
        node_count = {f: 0 for f in FEEDERS}
        for name in self.fleet.nodes:
            if name:
                node_count[name] += 1
        limited = node_count[LIMITED]
        with self.step("program"), self.db.transaction() as s:
            grid_nodes.put_grid_node(s, {"name": "sub-1", "load_percent": 60.0, "adder_per_percent": 0.0005}, now)
            for k, f in enumerate(FEEDERS):
                body: dict[str, Any] = {"name": f, "parent": "sub-1", "load_percent": 40.0 + 10 * k,
                                        "adder_per_percent": 0.0002 * (k + 1)}
                if f == LIMITED:  # must relieve 2.5 kW per device behind it: more than the average ask
                    body.update(current_load_kw=4.0 * limited, max_forward_kw=1.5 * limited)
                grid_nodes.put_grid_node(s, body, now)
            start = (now // 60 + 31) * 60  # whole minutes, about 30 min from now: due now with 1 h lead
            t = lambda x: time.strftime("%H:%M", time.gmtime(x))  # noqa: E731
            spec = {
                "name": "Bench publish", "currency": "USD",
                "window": {"weekdays": ALL_DAYS, "start": t(start), "end": t(start + 7200), "tz": "UTC"},
                "requested_kw": round(self.args.kw_per_device * self.n, 3), "interval_s": self.args.interval_s,
                "price_cap": 0.50, "price_floor": 0.0, "incentive": {"kind": "pay_as_clear"},
                "lead_time_s": 3600, "randomize_start_s": 60,
                "eligible_kinds": ["battery", "ev_charger", "load"], "description": "bench publish",
            }
            view = flex.create_program(s, spec, now)
        self.program_id, self.der_program_id = view["id"], view["der_program_id"]
        self.spec = spec
        self.result["program"] = spec
        self.result["grid"] = {"devices_per_feeder": node_count, "no_node": self.fleet.nodes.count(None),
                               "limited": {"node": LIMITED, "current_load_kw": 4.0 * limited,
                                           "max_forward_kw": 1.5 * limited}}
        _say(f"  grid (sub-1 + 4 feeders, {LIMITED} limited) and program {self.program_id} "
             f"(DERProgram {self.der_program_id}, window {spec['window']['start']}-{spec['window']['end']} UTC, "
             f"{spec['requested_kw']:,} kW asked) in {self.steps['program']} s")

    def _body(self, i: int) -> dict[str, Any]:
        body: dict[str, Any] = {"device_id": self.ids[i], "customer": f"customer-{i}", "kind": self.fleet.kinds[i]}
        if self.fleet.nodes[i]:
            body["grid_node"] = self.fleet.nodes[i]
        if self.fleet.offers[i] is not None:
            body["offer"] = self.fleet.offers[i]
        return body

    def enroll(self) -> None:
        from sqlalchemy import insert, select, text

        from server.db import derp as der_store
        from server.db import flex as store
        from server.services.flex import enrollments

        now = self.now0
        first = max(3, min(self.args.service_enrollments, self.n))
        late = max(0, min(self.args.late_enrollments, self.n - first))
        bulk_end = self.n - late
        with self.db.transaction() as s:
            node_ids = {r.name: r.id for r in store.grid_nodes(s)}
        t_first = time.perf_counter()
        with self.db.transaction() as s:
            for i in range(first):
                enrollments.enroll(s, self.program_id, self._body(i), now)
        t_first = time.perf_counter() - t_first
        t_bulk = time.perf_counter()
        with self.db.transaction() as s:
            for k in range(first, bulk_end, CHUNK):
                part = range(k, min(k + CHUNK, bulk_end))
                s.execute(insert(store.Enrollment), [
                    {"program_id": self.program_id, "device_id": self.ids[i], "customer": f"customer-{i}",
                     "device_kind": self.fleet.kinds[i],
                     "grid_node_id": node_ids[self.fleet.nodes[i]] if self.fleet.nodes[i] else None,
                     "offer": json.dumps(self.fleet.offers[i]) if self.fleet.offers[i] is not None else None,
                     "state": "active", "source": "operator", "external_ref": None,
                     "created_time": now, "updated_time": now} for i in part])
                s.execute(insert(der_store.ProgramMember),
                          [{"program_id": self.der_program_id, "device_id": self.ids[i]} for i in part])
        t_bulk = time.perf_counter() - t_bulk
        late_each: list[float] = []
        with self.db.transaction() as s:
            for i in range(bulk_end, self.n):
                t0 = time.perf_counter()
                enrollments.enroll(s, self.program_id, self._body(i), now)
                late_each.append(time.perf_counter() - t0)
        # a bulk row matches a service row of the same shape, column by column
        e = store.Enrollment
        with self.db.read() as conn:
            rows = {r.device_id: r._mapping for r in conn.execute(
                select(e).where(e.device_id.in_([self.ids[0], self.ids[first] if first < bulk_end else self.ids[0]])))}
            members = conn.execute(text("SELECT count(*) FROM der_program_members WHERE program_id = :p"),
                                   {"p": self.der_program_id}).scalar_one()
            enrolled = conn.execute(select(e.id).where(e.program_id == self.program_id, e.state == "active")).all()
        if first < bulk_end:
            svc, blk = rows[self.ids[0]], rows[self.ids[first]]
            same = ("program_id", "state", "source", "external_ref", "created_time", "updated_time")
            diff = {k: (svc[k], blk[k]) for k in same if svc[k] != blk[k]}
            if diff:
                raise RuntimeError(f"a bulk enrollment differs from a service one: {diff}")
        if members != self.n or len(enrolled) != self.n:
            raise RuntimeError(f"{len(enrolled)} active enrollments and {members} DERProgram members for {self.n} devices")
        with self.step("analyze"), self.db.engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
        self.steps["enroll"] = round(t_first + t_bulk + sum(late_each), 3)
        per_first = t_first / first
        per_late = sum(late_each) / len(late_each) if late_each else None
        self.result["enrollment"] = {
            "service_first": {"count": first, "seconds": round(t_first, 3), "ms_each": round(per_first * 1000, 2)},
            "bulk": {"count": bulk_end - first, "seconds": round(t_bulk, 3)},
            "service_late": {"count": len(late_each), "ms_each": round(per_late * 1000, 2) if per_late else None,
                             "members_before": bulk_end},
        }
        if per_late:
            # enroll reads every member to add one: cost ~ a + b * members; the whole fleet through
            # the service ~ n * a + b * n^2 / 2
            b = max(0.0, (per_late - per_first) / max(1, bulk_end - first / 2))
            a = max(0.0, per_first - b * first / 2)
            est = self.n * a + b * self.n * self.n / 2
            self.result["enrollment"]["service_all_estimate_s"] = round(est, 1)
        _say(f"  enrollments: {first} through enrollments.enroll ({per_first * 1000:.2f} ms each, program nearly empty), "
             f"{bulk_end - first:,} bulk in {t_bulk:.1f} s, {len(late_each)} through enrollments.enroll with "
             f"{bulk_end:,} members ({(per_late or 0) * 1000:.1f} ms each); ANALYZE {self.steps['analyze']} s")

    # ---------------------------------------------------------------------------- publish
    def _window(self, now: int) -> Any:
        from server.db import flex as store

        with self.db.transaction() as s:
            ws = [w for w in store.windows(s, self.program_id, since_end=now, limit=10)
                  if w.publish_at <= now < w.start and w.state == "planned"]
        if not ws:
            raise RuntimeError("no planned window due now (set-up took more than 30 min?)")
        return ws[0]

    def publish(self) -> None:
        from programs import clearing as clearing_mod
        from server.db import derp as der_store_mod
        from server.db import flex as flex_store_mod
        from server.services.flex import gathering, publishing

        now = int(time.time())
        w = self._window(now)
        self.window_key, self.window_id = w.window_key, w.id
        timers = Timers()
        profile_text = None
        publishing._rendered.cache_clear()
        if self.args.profile:
            prof = cProfile.Profile()
            t0 = time.perf_counter()
            prof.enable()
            outcome = publishing.run_window(self.db, self.program_id, w.window_key, now)
            prof.disable()
            wall = time.perf_counter() - t0
            out = io.StringIO()
            st = pstats.Stats(prof, stream=out)
            st.sort_stats("cumulative").print_stats(self.args.profile_top)
            st.sort_stats("tottime").print_stats(self.args.profile_top)
            profile_text = out.getvalue()
        else:
            for attr in ("input_digest", "gather", "clear_fleet", "_write_interval", "cancel_unsuperseded"):
                timers.wrap(publishing, attr, phase=True)
            for attr in ("fleet_controls", "_rendered", "new_mrids", "_curve_json"):
                timers.wrap(publishing, attr)
            for attr in ("offer_curve", "_check_control"):  # called inside gather
                timers.wrap(gathering, attr)
            timers.wrap(der_store_mod, "insert_events")
            timers.wrap(flex_store_mod, "add_setpoints")
            timers.wrap(clearing_mod.CurveBook, "from_curves", "CurveBook.from_curves")
            timers.wrap(gathering, "clear_with_grid")
            try:
                t0 = time.perf_counter()
                outcome = publishing.run_window(TimedDatabase(self.db, timers), self.program_id, w.window_key, now)
                wall = time.perf_counter() - t0
            finally:
                timers.restore()
        if outcome is None or outcome.get("action") != "publish":
            raise RuntimeError(f"run_window did not publish: {outcome}")
        self.outcome = outcome
        self.publish_now = now
        phases = {k: {"seconds": round(v, 3), "calls": timers.calls[k]} for k, v in sorted(timers.seconds.items())}
        self.result["publish"] = {
            "now": now, "window": w.window_key, "wall_seconds": round(wall, 3),
            "run_window_seconds": outcome.get("seconds"), "devices": outcome["devices"],
            "skipped_count": outcome["skipped_count"], "skipped": outcome["skipped"][:5],
            "intervals": outcome["intervals"], "summary": outcome["summary"], "phases": phases,
            "profiled": bool(self.args.profile),
        }
        if profile_text:
            self.result["publish"]["profile"] = profile_text
        _say(f"  run_window: {wall:.2f} s{' (under cProfile)' if self.args.profile else ''} — {outcome['summary']}")
        if outcome["skipped_count"]:
            _say(f"  skipped {outcome['skipped_count']}: {outcome['skipped'][:3]}")
        self._gather_query_alone()

    def _gather_query_alone(self) -> None:
        """The gather statement's SELECT + fetchall on its own (built as gathering.gather builds it)."""
        from sqlalchemy import select

        from server.db import flex as store
        from server.db.models import Device
        from server.services.flex import gathering

        e = store.Enrollment
        stmt = gathering._with_ratings(
            select(e.id, e.device_id, e.device_kind, e.grid_node_id, e.offer, *gathering._RATINGS_COLUMNS)
            .join(Device, Device.id == e.device_id), e.device_id,
        ).where(e.program_id == self.program_id, e.state == "active", Device.enabled.is_(True)).order_by(e.device_id)
        times = []
        for _ in range(2):
            with self.db.transaction() as s:
                t0 = time.perf_counter()
                rows = s.execute(stmt).all()
                times.append(time.perf_counter() - t0)
        raw = self.db.engine.raw_connection()
        try:
            sql = str(stmt.compile(self.db.engine, compile_kwargs={"literal_binds": True}))
            cur = raw.cursor()
            t0 = time.perf_counter()
            cur.execute(sql)
            n_raw = len(cur.fetchall())
            t_raw = time.perf_counter() - t0
            raw.rollback()
        finally:
            raw.close()
        assert n_raw == len(rows)
        self.result["publish"]["gather_query_alone"] = {
            "rows": len(rows), "orm_session_seconds": [round(t, 3) for t in times], "driver_seconds": round(t_raw, 3)}

    # ---------------------------------------------------------------------------- first poll
    def first_poll(self) -> None:
        from lxml import etree
        from sqlalchemy import select

        from server.db import derp as der_store
        from server.db import flex as store

        ns = {"s": "urn:ieee:std:2030.5:ns"}
        sp, cl = store.Setpoint, store.Clearing
        with self.db.read() as conn:
            mine = {r.device_id: r for r in conn.execute(
                select(sp.device_id, sp.power_kw, sp.event_mrid, cl.interval_index)
                .join(cl, cl.id == sp.clearing_id)
                .where(cl.window_id == self.window_id, cl.revision == 1, cl.interval_index == 0,
                       sp.device_id.in_(self.pollers)))}
            n_events = conn.execute(select(der_store.DerEvent.id).where(
                der_store.DerEvent.program_id == self.der_program_id)).all()
        polls = []
        for i, d in enumerate(self.pollers):
            warm = self._get(d, f"/edev/{d}")
            if warm.status_code != 200:
                raise RuntimeError(f"GET /edev/{d}: {warm.status_code}")
            path = f"/edev/{d}/derp/{self.der_program_id}/derc?l=10"
            t0 = time.perf_counter()
            resp = self._get(d, path)
            ms = (time.perf_counter() - t0) * 1000
            if resp.status_code != 200:
                raise RuntimeError(f"GET {path}: {resp.status_code} {resp.headers.get('X-Error-Detail')}")
            t1 = time.perf_counter()
            again = self._get(d, path)
            ms_again = (time.perf_counter() - t1) * 1000
            assert again.data == resp.data
            doc = etree.fromstring(resp.data)
            sp_row = mine.get(d)
            if sp_row is None:
                raise RuntimeError(f"device {d} has no setpoint in the window")
            controls = {c.findtext("s:mRID", namespaces=ns): c for c in doc.findall("s:DERControl", ns)}
            ctl = controls.get(sp_row.event_mrid)
            if ctl is None:
                raise RuntimeError(f"device {d}: its event {sp_row.event_mrid} is not in its DERControlList: "
                                   f"{resp.data[:400]!r}")
            kind = self.fleet.kinds[i]
            power_mw = _half_away(round(sp_row.power_kw * 1e9), 1000)  # kW -> mW, half away
            check: dict[str, Any] = {"device_id": d, "kind": kind, "power_kw": sp_row.power_kw,
                                     "status": ctl.findtext("s:EventStatus/s:currentStatus", namespaces=ns),
                                     "first_poll_ms": round(ms, 2), "cached_poll_ms": round(ms_again, 2),
                                     "bytes": len(resp.data)}
            if kind == "load":
                value = int(ctl.findtext("s:DERControlBase/s:opModTargetW/s:value", namespaces=ns))
                mult = int(ctl.findtext("s:DERControlBase/s:opModTargetW/s:multiplier", namespaces=ns))
                got_w = value * 10.0 ** mult
                ok = abs(got_w - power_mw / 1000) <= 0.5 * 10.0 ** mult + 1e-9
                check.update(mode="opModTargetW", got=[value, mult], expected_w=power_mw / 1000, ok=ok)
            else:
                d_mw = self.fleet.control_rating_w(i, sp_row.power_kw) * 1000
                expected = max(-10_000, min(10_000, _half_away(power_mw * 10_000, d_mw)))
                got = int(ctl.findtext("s:DERControlBase/s:opModFixedW", namespaces=ns))
                check.update(mode="opModFixedW", got=got, expected=expected, ok=got == expected)
            if not check["ok"]:
                raise RuntimeError(f"first poll of device {d} has the wrong control: {check}")
            polls.append(check)
        self.result["first_poll"] = polls
        self.result["events"] = len(n_events)
        battery = polls[0]
        e2e = self.result["publish"]["wall_seconds"] + battery["first_poll_ms"] / 1000
        self.result["end_to_end_seconds"] = round(e2e, 3)
        self.result["target_met"] = e2e <= TARGET_S and not self.args.profile
        for c in polls:
            _say(f"  first poll {c['kind']:10} device {c['device_id']}: {c['first_poll_ms']:.1f} ms "
                 f"(cached {c['cached_poll_ms']:.1f} ms), {c['mode']} {c['got']} — expected "
                 f"{c.get('expected', c.get('expected_w'))}, status {c['status']}: OK")

    # ---------------------------------------------------------------------------- report
    def report(self) -> None:
        r = self.result
        p = r["publish"]
        ph = p["phases"]

        def sec(name: str) -> str:
            x = ph.get(name)
            return f"{x['seconds']:8.3f}  ({x['calls']:,} calls)" if x else "       -"

        ivs = p["intervals"]
        lines = [
            "",
            f"publish, {r['database']}, {p['devices']:,} devices, {len(ivs)} interval(s), "
            f"{r['events']:,} events written{' — PROFILED, not comparable' if p['profiled'] else ''}",
            f"  {'run_window wall':34} {p['wall_seconds']:8.3f} s",
        ]
        if ph:
            def rest(outer: str, inner: tuple[str, ...]) -> str:
                t = ph.get(outer, {}).get("seconds", 0.0) - sum(ph.get(f"{outer}/{k}", {}).get("seconds", 0.0)
                                                               for k in inner)
                return f"{t:8.3f}"

            g_in = ("offer_curve", "_check_control")
            w_in = ("fleet_controls", "_rendered", "new_mrids", "_curve_json", "insert_events", "add_setpoints")
            lines += [
                f"  {'· input_digest':34} {sec('input_digest')}",
                f"  {'· gather (query + curves)':34} {sec('gather')}",
                f"  {'  · offer_curve (distinct curves)':34} {sec('gather/offer_curve')}",
                f"  {'  · _check_control':34} {sec('gather/_check_control')}",
                f"  {'  · query, rows, DeviceData, rest':34} {rest('gather', g_in[:2])}",
                f"  {'· CurveBook.from_curves':34} {sec('CurveBook.from_curves')}",
                f"  {'· clear_fleet (grid + clearing)':34} {sec('clear_fleet')}",
                f"  {'  · clear_with_grid':34} {sec('clear_fleet/clear_with_grid')}",
                f"  {'· _write_interval':34} {sec('_write_interval')}",
                f"  {'  · fleet_controls (vectorised)':34} {sec('_write_interval/fleet_controls')}",
                f"  {'  · _rendered (lru_cache)':34} {sec('_write_interval/_rendered')}",
                f"  {'  · new_mrids':34} {sec('_write_interval/new_mrids')}",
                f"  {'  · _curve_json':34} {sec('_write_interval/_curve_json')}",
                f"  {'  · insert_events (COPY / executemany)':34} {sec('_write_interval/insert_events')}",
                f"  {'  · add_setpoints (COPY / executemany)':34} {sec('_write_interval/add_setpoints')}",
                f"  {'  · rest of the per-device loop':34} {rest('_write_interval', w_in)}",
                f"  {'· cancel_unsuperseded':34} {sec('cancel_unsuperseded')}",
                f"  {'· commit (flush + counters)':34} {sec('commit')}",
            ]
            accounted = sum(ph.get(k, {}).get("seconds", 0.0) for k in (
                "input_digest", "gather", "CurveBook.from_curves", "clear_fleet", "_write_interval",
                "cancel_unsuperseded", "commit"))
            lines.append(f"  {'· everything else':34} {p['wall_seconds'] - accounted:8.3f}")
        g = p["gather_query_alone"]
        lines.append(f"  gather SELECT alone: {g['rows']:,} rows, session {g['orm_session_seconds']} s, "
                     f"driver {g['driver_seconds']} s")
        for iv in ivs[:3]:
            lines.append(f"  interval {iv['interval']}: {iv['requested_kw']:,.0f} kW asked, {iv['quantity_kw']:,.0f} kW at "
                         f"{iv['price']:.4f}, feasible {iv['feasible']}; nodes: "
                         + ", ".join(f"{k} {v['price']:.4f}{' binding' if v.get('binding') else ''}"
                                     for k, v in (iv["nodes"] or {}).items() if not k.startswith("_")))
        poll = r["first_poll"][0]
        lines += [
            f"  first poll (battery, DERControlList): {poll['first_poll_ms']:.1f} ms",
            f"  END-TO-END (run_window + first poll): {r['end_to_end_seconds']:.2f} s — target <= {TARGET_S:.0f} s: "
            + ("met" if r["target_met"] else ("n/a (profiled)" if p["profiled"] else "NOT met")),
            "  set-up: " + ", ".join(f"{k} {v} s" for k, v in self.steps.items()),
            f"  peak RSS {r['peak_rss_mib']} MiB",
        ]
        _say("\n".join(lines))
        if p.get("profile"):
            _say(p["profile"])

    # ------------------------------------------------------------------------------ clean-up
    def cleanup(self) -> None:
        clean_up(getattr(self, "db", None), self.pg, self.tmp, self.args.keep, _say)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench_publish.py",
        description="End-to-end publish: N enrolled devices, one window cleared and written by "
        "publishing.run_window, then each poller's first DERControlList poll, in-process.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--devices", type=int, default=100_000, help="enrolled devices")
    p.add_argument("--quick", action="store_true", help="a smoke run: 2,000 devices")
    p.add_argument("--postgres", metavar="URL", help="a PostgreSQL server on this machine to create a private database on")
    p.add_argument("--kw-per-device", type=float, default=1.5, help="requested kW = this x devices")
    p.add_argument("--interval-s", type=int, default=None, help="program interval_s (default: one interval, one "
                   "event per device)")
    p.add_argument("--service-enrollments", type=int, default=200, help="first enrollments through enrollments.enroll")
    p.add_argument("--late-enrollments", type=int, default=20, help="last enrollments through enrollments.enroll")
    p.add_argument("--seed", type=int, default=2030)
    p.add_argument("--profile", action="store_true", help="run run_window under cProfile (figures not comparable)")
    p.add_argument("--profile-top", type=int, default=35)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="folder for the JSON results")
    p.add_argument("--keep", action="store_true", help="keep the temporary home (and SQLite database)")
    a = p.parse_args(argv)
    if a.quick:
        a.devices = 2000
    if a.devices < 10:
        p.error("need at least 10 devices")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    t0 = time.perf_counter()
    try:
        bench.setup()
        bench.devices()
        bench.der_documents()
        bench.program()
        bench.enroll()
        bench.publish()
        bench.first_poll()
    finally:
        bench.cleanup()
    bench.result["setup_steps_seconds"] = bench.steps
    bench.result["total_seconds"] = round(time.perf_counter() - t0, 1)
    bench.result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    bench.result["machine"]["loadavg_end"] = list(os.getloadavg())
    bench.report()
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out / f"publish-{stamp}.json"
    out.write_text(json.dumps(bench.result, indent=2, default=str))
    _say(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""Metering benchmark: reading ingest (POST /mup/{id}) and device-day read-back, in one process.

What it does, in one run (no network at all: the Flask app is called in-process through its test
client, with the client certificate in the proxy header as behind nginx; every loop is bounded):

  1. Makes a temporary home and database (SQLite by default; with --postgres URL a private
     database created on that server — 127.0.0.1 only — and dropped at the end), issues
     --cert-devices device certificates and registers them plus synthetic devices up to --devices.
  2. Bulk-loads the store directly (not through the API): per device one usage point with one
     real-power meter reading (uom 38, W), and --days days of 5-minute readings (288 a day) before
     today (UTC), in (meter reading, start) order: executemany on SQLite, COPY on PostgreSQL; then
     ANALYZE. Reports rows, seconds and the readings table's size on disk.
  3. Read-back: --reads times, a random certificate device and a random loaded day:
       http   — GET /upt/{u}/mr/{m}/rs/{day}/r?l=288 through the whole app (certificate → scope,
                 two lookups, 288 Readings rendered as 2030.5 XML; checks 288 came back);
       query  — the range query alone (server.db.metering.readings);
       series — server.db.metering.load_series for that device and day (numpy W).
     Reports p50/p90/p99/mean ms of each.
  4. Ingest: for --seconds (at most --max-posts posts), the certificate devices in turn POST a
     MirrorMeterReading with one MirrorReadingSet of --readings-per-post new 5-minute readings
     (in the year before the loaded days: new rows, never replacements) to their usage point,
     each answered 201. Bodies are rendered outside the timed request; with --threads 1 the rate is
     posts over the summed request time, with more threads (each with its own devices and test
     client) posts over wall-clock time. Reports posts/s, readings/s and latency p50/p99.
  5. Prints a summary and writes JSON to bench/results/metering-<UTC timestamp>.json.

Examples:
    .venv/bin/python bench/bench_metering.py                         # 1,000 devices x 30 days
    .venv/bin/python bench/bench_metering.py --devices 100 --days 3  # a quick look
    .venv/bin/python bench/bench_metering.py --postgres postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DAY = 86_400
STEP = 300  # five minutes
PER_DAY = DAY // STEP
from benchlib import PgDatabase, clean_up, machine_info  # noqa: E402


def _say(msg: str) -> None:
    print(msg, flush=True)


def _stats(ms: list[float]) -> dict[str, float | None]:
    if not ms:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "mean": None}
    s = sorted(ms)

    def pct(q: float) -> float:
        return s[max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))]

    return {"n": len(s), "p50": pct(50), "p90": pct(90), "p99": pct(99), "mean": sum(s) / len(s)}


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="derflex-bench-metering-"))
        self.pg = PgDatabase(args.postgres) if args.postgres else None
        self.result: dict[str, Any] = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                                       "machine": machine_info(("Flask", "SQLAlchemy", "lxml", "numpy", "psycopg")), "config": {k: v for k, v in vars(args).items()}}

    # ------------------------------------------------------------------------------ set-up
    def setup(self) -> None:
        from server.app import create_app
        from server.bootstrap import prepare
        from server.config import Settings
        from server.pki import DevPKI
        from server.services.sep2 import edev

        a = self.args
        if self.pg is not None:
            self.pg.create()
        self.settings = Settings(
            home=self.tmp, proxy_mode=True, database_url=self.pg.url if self.pg else "",
            response_cache_seconds=a.response_cache,
        )
        self.db = prepare(self.settings, say=lambda _m: None)
        t0 = time.perf_counter()
        creds = DevPKI(self.settings.certs_dir).issue_many([f"meter-{i}" for i in range(a.cert_devices)])
        now = int(time.time())
        lfdis = [c.lfdi for c in creds] + [secrets.token_hex(20).upper() for _ in range(a.devices - len(creds))]
        with self.db.transaction() as s:
            ids = [edev.register_out_of_band(s, lfdi, now).id for lfdi in lfdis]
        self.devices = ids
        self.certs = {ids[i]: creds[i] for i in range(len(creds))}
        self.app = create_app(self.settings, self.db)
        self.client = self.app.test_client()
        self.result["setup_seconds"] = round(time.perf_counter() - t0, 2)
        _say(f"{len(ids)} devices registered ({len(creds)} with certificates) in {self.result['setup_seconds']} s "
             f"[{self.settings.db_url.split('://')[0]}]")

    def _headers(self, device_id: int) -> dict[str, str]:
        cred = self.certs[device_id]
        pem = cred.cert_path.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
        return {self.settings.proxy_cert_header: quote(pem)}

    # ---------------------------------------------------------------------------- bulk load
    def bulk_load(self) -> None:
        from sqlalchemy import insert, select

        from server.db import metering
        from server.sep2 import codec
        from server.sep2.mup import ReadingType

        a = self.args
        self.today = int(time.time()) // DAY * DAY
        self.first_day = self.today // DAY - a.days
        rt = ReadingType(accumulation_behaviour=12, data_qualifier=2, flow_direction=1, interval_length=STEP,
                         kind=37, power_of_ten_multiplier=0, uom=38)
        t0 = time.perf_counter()
        with self.db.transaction() as s:
            s.execute(insert(metering.UsagePoint), [
                {"device_id": d, "mrid": f"{d:032X}", "role_flags": 0x49, "service_category_kind": 0, "status": 1,
                 "created_time": 0, "changed_time": 0} for d in self.devices])
            ups = dict(s.execute(select(metering.UsagePoint.device_id, metering.UsagePoint.id)).all())
            s.execute(insert(metering.MeterReading), [
                {"usage_point_id": ups[d], "mrid": f"{d:030X}01", "reading_type": codec.render(rt).decode(),
                 "uom": 38, "multiplier": 0, "flow_direction": 1, "kind": 37, "accumulation_behaviour": 12,
                 "data_qualifier": 2, "interval_length": STEP, "created_time": 0} for d in self.devices])
            mrs = dict(s.execute(
                select(metering.UsagePoint.device_id, metering.MeterReading.id)
                .join(metering.MeterReading, metering.MeterReading.usage_point_id == metering.UsagePoint.id)).all())
        self.usage_points, self.meter_readings = ups, mrs
        rows = 0
        raw = self.db.engine.raw_connection()
        try:
            cur = raw.cursor()
            pg = self.pg is not None
            for d in self.devices:
                mr = mrs[d]
                batch = [
                    (start, 1000 + (d * 7 + start // STEP * 13) % 4000, mr, STEP, 1, 0)
                    for day in range(self.first_day, self.first_day + a.days)
                    for start in range(day * DAY, (day + 1) * DAY, STEP)
                ]
                if pg:
                    with cur.copy("COPY readings (start, value, meter_reading_id, duration, quality_flags, multiplier) FROM STDIN") as copy:
                        for row in batch:
                            copy.write_row(row)
                    cur.execute("INSERT INTO reading_days (meter_reading_id, day) SELECT %s, generate_series(%s::int, %s::int)",
                                (mr, self.first_day, self.first_day + a.days - 1))
                else:
                    cur.executemany("INSERT INTO readings (start, value, meter_reading_id, duration, quality_flags, multiplier) "
                                    "VALUES (?, ?, ?, ?, ?, ?)", batch)
                    cur.executemany("INSERT INTO reading_days (meter_reading_id, day) VALUES (?, ?)",
                                    [(mr, day) for day in range(self.first_day, self.first_day + a.days)])
                rows += len(batch)
                if d % 100 == 0:
                    raw.commit()
            raw.commit()
            cur.execute("ANALYZE")
            raw.commit()
            if pg:
                cur.execute("SELECT pg_total_relation_size('readings')")
                size = cur.fetchone()[0]
            else:
                cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                size = Path(self.settings.db_url.split("///", 1)[1]).stat().st_size
        finally:
            raw.close()
        seconds = time.perf_counter() - t0
        self.result["bulk_load"] = {"readings": rows, "seconds": round(seconds, 1), "rows_per_second": round(rows / seconds),
                                    "bytes_on_disk": size, "bytes_per_reading": round(size / rows, 1)}
        _say(f"bulk-loaded {rows:,} readings ({len(self.devices)} devices x {a.days} days x {PER_DAY}) in {seconds:.1f} s; "
             f"{size / 2**20:.0f} MiB on disk ({size / rows:.0f} bytes per reading{' incl. its index' if self.pg else ', whole database file'})")

    # ----------------------------------------------------------------------------- read-back
    def read_back(self) -> None:
        from server.db import metering

        a = self.args
        rng = random.Random(2030)
        http_ms, query_ms, series_ms = [], [], []
        devices = list(self.certs)
        headers = {d: self._headers(d) for d in devices}
        deadline = time.monotonic() + a.max_read_seconds
        for i in range(a.reads + 3):  # three unrecorded warm-ups
            if time.monotonic() > deadline:
                break
            d = rng.choice(devices)
            day = rng.randrange(self.first_day, self.first_day + a.days)
            up, mr = self.usage_points[d], self.meter_readings[d]
            path = f"/upt/{up}/mr/{mr}/rs/{day}/r?l={PER_DAY}"
            t0 = time.perf_counter()
            resp = self.client.get(path, headers=headers[d], environ_base={"REMOTE_ADDR": "127.0.0.1"})
            t1 = time.perf_counter()
            if resp.status_code != 200 or f'results="{PER_DAY}"'.encode() not in resp.data[:300]:
                raise RuntimeError(f"GET {path}: {resp.status_code} {resp.data[:200]!r}")
            with self.db.read() as conn:
                t2 = time.perf_counter()
                total, rows = metering.readings(conn, mr, day * DAY, (day + 1) * DAY, 0, PER_DAY)
                t3 = time.perf_counter()
                starts, watts = metering.load_series(conn, d, day * DAY, (day + 1) * DAY)
                t4 = time.perf_counter()
            assert total == len(rows) == len(starts) == PER_DAY, (total, len(rows), len(starts))
            if i >= 3:
                http_ms.append((t1 - t0) * 1000)
                query_ms.append((t3 - t2) * 1000)
                series_ms.append((t4 - t3) * 1000)
        self.result["read_back"] = {"http": _stats(http_ms), "query": _stats(query_ms), "series": _stats(series_ms),
                                    "response_bytes": len(resp.data)}
        for name, ms in (("http", http_ms), ("query", query_ms), ("series", series_ms)):
            s = _stats(ms)
            _say(f"read-back {name:6}: n={s['n']}, p50 {s['p50']:.2f} ms, p90 {s['p90']:.2f}, p99 {s['p99']:.2f}, mean {s['mean']:.2f}")

    # -------------------------------------------------------------------------------- ingest
    def ingest(self) -> None:
        from server.sep2 import codec
        from server.sep2.derp import DateTimeInterval
        from server.sep2.mup import MirrorMeterReading, MirrorReadingSet, Reading

        a = self.args
        n = a.readings_per_post
        devices = list(self.certs)
        headers = {d: self._headers(d) for d in devices}
        # New readings, in days before the loaded ones (so never ahead of the clock, never a
        # replacement): up to a year of them per device.
        origin = (self.first_day - 366) * DAY
        next_start = {d: origin for d in devices}
        mrid = {d: f"{d:030X}01" for d in devices}

        def body(d: int) -> bytes:
            start = next_start[d]
            next_start[d] = start + n * STEP
            rs = MirrorReadingSet(
                mrid=secrets.token_hex(16).upper(), time_period=DateTimeInterval(start=start, duration=n * STEP),
                readings=[Reading(quality_flags="01", time_period=DateTimeInterval(start=start + i * STEP, duration=STEP),
                                  value=1000 + i) for i in range(n)])
            return codec.render(MirrorMeterReading(mrid=mrid[d], last_update_time=start + n * STEP, mirror_reading_sets=[rs]))

        limit = min(a.max_posts, len(devices) * (366 * DAY // (n * STEP)))
        threads = max(1, min(a.threads, len(devices)))
        lock = threading.Lock()
        latencies: list[float] = []
        errors: list[str] = []
        posted = [0]
        deadline = time.monotonic() + a.seconds

        def worker(mine: list[int]) -> None:
            client = self.app.test_client()
            k = 0
            while time.monotonic() < deadline and not errors:
                with lock:
                    if posted[0] >= limit:
                        return
                    posted[0] += 1
                d = mine[k % len(mine)]
                k += 1
                data = body(d)
                path = f"/mup/{self.usage_points[d]}"
                t0 = time.perf_counter()
                resp = client.post(path, data=data, content_type="application/sep+xml", headers=headers[d],
                                   environ_base={"REMOTE_ADDR": "127.0.0.1"})
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    latencies.append(ms)
                if resp.status_code != 201:
                    errors.append(f"POST {path}: {resp.status_code} {resp.headers.get('X-Error-Detail')}")

        wall0 = time.perf_counter()
        pool = [threading.Thread(target=worker, args=(devices[t::threads],)) for t in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(a.seconds + 60)
        wall = time.perf_counter() - wall0
        if errors:
            raise RuntimeError(errors[0])
        i = len(latencies)
        busy = sum(latencies) / 1000
        s = _stats(latencies)
        rate = i / busy if threads == 1 else i / wall
        self.result["ingest"] = {"threads": threads, "posts": i, "readings_per_post": n, "wall_seconds": round(wall, 2),
                                 "posts_per_second": round(rate, 1), "readings_per_second": round(rate * n),
                                 "rate_basis": "summed request time" if threads == 1 else "wall clock",
                                 "latency_ms": s, "body_bytes": len(body(devices[0]))}
        basis = "request time" if threads == 1 else f"wall clock, {threads} threads"
        _say(f"ingest: {i} posts of {n} readings in {wall:.1f} s: {rate:.0f} posts/s, {rate * n:,.0f} readings/s "
             f"({basis}); p50 {s['p50']:.2f} ms, p99 {s['p99']:.2f} ms")

    # ------------------------------------------------------------------------------ clean-up
    def cleanup(self) -> None:
        clean_up(getattr(self, "db", None), self.pg, self.tmp, self.args.keep, _say)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench_metering.py",
        description="Metering: bulk-load a store of 5-minute readings, time device-day read-back "
        "(HTTP, query, load_series) and sustained MirrorMeterReading POSTs, in-process.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--devices", type=int, default=1000, help="devices in the store")
    p.add_argument("--days", type=int, default=30, help="days of 5-minute readings per device")
    p.add_argument("--cert-devices", type=int, default=20, help="devices with a certificate (readers and posters)")
    p.add_argument("--reads", type=int, default=300, help="device-day reads")
    p.add_argument("--max-read-seconds", type=float, default=120.0, help="bound on the read-back loop")
    p.add_argument("--readings-per-post", type=int, default=12, help="readings in each MirrorMeterReading")
    p.add_argument("--seconds", type=float, default=20.0, help="duration of the ingest loop")
    p.add_argument("--max-posts", type=int, default=50_000, help="bound on the ingest loop")
    p.add_argument("--threads", type=int, default=1, help="concurrent posters (threads, each its own devices); "
                   "with more than one the rate is over wall-clock time, body rendering included")
    p.add_argument("--response-cache", type=int, default=300, help="the app's response_cache_seconds")
    p.add_argument("--postgres", metavar="URL", help="a PostgreSQL server on this machine to create a private database on")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="folder for the JSON results")
    p.add_argument("--keep", action="store_true", help="keep the temporary home (and SQLite database)")
    a = p.parse_args(argv)
    if a.cert_devices < 1 or a.devices < a.cert_devices or a.days < 1 or a.readings_per_post < 1:
        p.error("need 1 <= --cert-devices <= --devices, --days >= 1, --readings-per-post >= 1")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    try:
        bench.setup()
        bench.bulk_load()
        bench.read_back()
        bench.ingest()
    finally:
        bench.cleanup()
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out / f"metering-{stamp}.json"
    out.write_text(json.dumps(bench.result, indent=2, default=str))
    _say(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""2030.5 notification benchmark: changes recorded as outbox facts → the `notifications` consumer
queues documents → the notifier POSTs them over TLS 1.2 CCM8 to real receivers — how many per
second with none lost, how long from change to delivery, and how long a fan-out to 10,000 takes.

Targets (issue 13, on this 2-core machine): ≥ 1,000 notifications/s with 0 lost to one aggregator
receiver over keep-alive; ≥ 400/s to distinct receivers that need a new TLS handshake each; a
window (an operator event for all members) published to 10,000 subscribed devices all delivered
≤ 30 s on PostgreSQL. Reported in the shape of the GRIDAPPSD Go server's stress reports (offered
rate, delivered, drop/lost, onset of a backlog), plus p50/p99 change → delivery.

What one run does (every wait is bounded; only 127.0.0.1 is used):

  1. A fresh database migrated by the project's migrations (server.bootstrap.prepare): SQLite in a
     temporary home, or with --postgres URL a private database created there and dropped at the
     end. The dev PKI it makes gives the server certificate the notifier presents and the trust
     chain it checks receivers against.
  2. The receiver, a process of its own: an asyncio TLS 1.2 CCM8 server on one or many ports that
     requires and verifies the server's certificate, answers every POST 201 at once and records
     (arrival time, port, path, hash of the body). Its own ceiling is measured first (--no-ceiling
     skips it): blaster processes POST a typical Notification back to back (keep-alive), then with a
     new handshake per POST; the receiver's CPU per notification is the figure (its ceiling on
     one core = 1 / that).
  3. The server side, in this process: the real jobs, server.jobs.outbox.OutboxDrainer with the
     `notifications` consumer (server.services.sep2.notify) and its companion
     server.jobs.notify.Notifier (elected, as in `derflex serve`), configured like `derflex serve`
     with DERFLEX_NOTIFICATION_ALLOW=loopback.
  4. Scenarios (--scenarios, default all):
     * keepalive: --devices (5,000) devices of one aggregator, members of one DER program, each
       subscribed by the aggregator to its DERControlList (limit 1) with notificationURI
       https://127.0.0.1:<one port>/agg/<device>; a producer process writes, open loop, --rate
       (1,000) per-device DERControls per second for --seconds (30) in transactions of --tick-ms (100)
       worth (server.services.sep2.derp.create_events: the event rows and their ControlCreated
       facts in one transaction, as publishing does). Each fact must give exactly one
       notification at the receiver.
     * handshake: --hs-devices (2,000) devices, each subscribing itself to its DERControlList, with
       --hs-receivers (500) receivers (ports; device i uses port i mod 500); the receiver closes
       the connection after each answer, so every notification needs a new TLS handshake, as when
       each device runs its own notification server. --hs-rate (400) per second for --seconds.
     * fanout: --fanout-devices (10,000) devices split over --aggregators (10) aggregators (a
       receiver port each, keep-alive), each device's DERControlList subscribed; then (a) one
       operator event for all members (one fact → 10,000 notifications) and (b) a window: one
       per-device control for each of the 10,000 in one transaction (10,000 facts), each timed from
       its commit to the last arrival.
  5. Counting: the receiver's records are matched against the queued notification rows by (URI,
     body hash) — lost = queued but never received, doubled = received more often than queued;
     facts without their notification count as lost too. Latency = arrival − commit time of the
     change (from the producer's clock, same machine). Delivered/s in the steady middle 80 % of the
     producing phase, per-second min/max, the largest backlog (produced − received) and when it
     began growing. CPU seconds of this process (drainer + notifier), the producer, the receiver
     and PostgreSQL.
  6. Prints tables and writes bench/results/notify-<db>-<UTC timestamp>.json (machine, configuration,
     every scenario).

Examples:
    .venv/bin/python bench/bench_notify.py --quick                  # smoke run, SQLite (~1 min)
    .venv/bin/python bench/bench_notify.py                          # everything on SQLite
    .venv/bin/python bench/bench_notify.py --postgres postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/bench_notify.py --scenarios keepalive --rate 500 --rate 1000 --rate 1500
    .venv/bin/python bench/bench_notify.py --scenarios fanout --profile   # where the time goes
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import cProfile
import hashlib
import io
import json
import multiprocessing as mp
import os
import pstats
import random
import re
import shutil
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import PgDatabase, machine_info  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
ALL_RE = re.compile(rb' all="([0-9]+)"')  # the listed resource's count (a Notification has none)
CHUNK = 5_000
TARGETS = {"keepalive": 1000.0, "handshake": 400.0, "fanout_s": 30.0}


def say(msg: str) -> None:
    print(msg, flush=True)


def digest(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=10).hexdigest()


# ------------------------------------------------------------------------------- CPU accounting


def _proc_cpu(pid: int | str) -> tuple[float, str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1:raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK, comm


def cpu_snapshot(pids: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {name: (_proc_cpu(pid) or (0.0, ""))[0] for name, pid in pids.items()}
    pg: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_cpu(entry)
            if st is not None and st[1].startswith("postgres"):
                pg[int(entry)] = st[0]
    out["postgres"] = pg
    return out


def cpu_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, now in after.items():
        then = before.get(key, {} if isinstance(now, dict) else 0.0)
        out[key] = round(sum(v - then.get(p, 0.0) for p, v in now.items()) if isinstance(now, dict) else now - then, 2)
    return out


# ------------------------------------------------------------------------------------ receiver


def receiver_main(pipe: Any, cert: str, key: str, trust: str, ports: int, close_each: bool) -> None:
    """A process: TLS servers on `ports` ports that answer every POST 201 and record it. Commands
    over `pipe`: ("ports",) ("count",) ("dump",) ("reset",) ("close_each", bool) ("stop",)."""
    from server.tls import CCM8

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CCM8)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(trust)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.options |= ssl.OP_NO_TICKET  # no resumption: a new connection is a full handshake
    state = {"close_each": close_each, "connections": 0}
    records: list[tuple[float, int, str, str, int]] = []
    ok_keep = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    ok_close = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

    class Proto(asyncio.Protocol):
        def __init__(self, port: int):
            self.port, self.buf, self.transport = port, b"", None

        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            state["connections"] += 1

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buf[:end].decode("latin-1").split("\r\n")
                length = 0
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if len(self.buf) < end + 4 + length:
                    return
                body = self.buf[end + 4:end + 4 + length]
                self.buf = self.buf[end + 4 + length:]
                m = ALL_RE.search(body)
                records.append((time.time(), self.port, head[0].split(" ")[1], digest(body),
                                int(m.group(1)) if m else -1))
                if state["close_each"]:
                    self.transport.write(ok_close)
                    self.transport.close()
                    return
                self.transport.write(ok_keep)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        servers, bound = [], []
        for _ in range(ports):
            srv = await loop.create_server(lambda: None, "127.0.0.1", 0, ssl=ctx, backlog=1024)
            port = srv.sockets[0].getsockname()[1]
            srv.close()
            await srv.wait_closed()
            srv = await loop.create_server(lambda p=port: Proto(p), "127.0.0.1", port, ssl=ctx, backlog=1024,
                                           ssl_handshake_timeout=30)
            servers.append(srv)
            bound.append(port)
        done = asyncio.Event()

        def commands() -> None:
            while True:
                try:
                    cmd = pipe.recv()
                except EOFError:
                    cmd = ("stop",)
                if cmd[0] == "ports":
                    pipe.send(bound)
                elif cmd[0] == "count":
                    pipe.send((len(records), state["connections"]))
                elif cmd[0] == "dump":
                    pipe.send(list(records))
                elif cmd[0] == "reset":
                    records.clear()
                    state["connections"] = 0
                    pipe.send(True)
                elif cmd[0] == "close_each":
                    state["close_each"] = bool(cmd[1])
                    pipe.send(True)
                else:
                    loop.call_soon_threadsafe(done.set)
                    return

        threading.Thread(target=commands, daemon=True).start()
        await done.wait()
        for srv in servers:
            srv.close()

    asyncio.run(main())


class ReceiverProc:
    def __init__(self, pki: Any, ports: int, close_each: bool = False):
        ctx = mp.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.lock = threading.Lock()
        self.proc = ctx.Process(target=receiver_main, args=(child, str(pki.server_cert_path), str(pki.server_key_path),
                                                            str(pki.trust_path), ports, close_each), daemon=True)
        self.proc.start()
        self.ports: list[int] = self.ask("ports")

    def ask(self, *cmd: Any) -> Any:
        with self.lock:
            self.pipe.send(cmd)
            if not self.pipe.poll(60):
                raise RuntimeError(f"the receiver did not answer {cmd[0]}")
            return self.pipe.recv()

    def stop(self) -> None:
        try:
            self.pipe.send(("stop",))
        except OSError:
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


# --------------------------------------------------------------------------------- blasters


def blaster_main(cert: str, key: str, trust: str, port: int, threads: int, seconds: float, fresh: bool,
                 body: bytes, out: Any) -> None:
    """POST `body` to 127.0.0.1:port back to back on `threads` connections for `seconds`: keep-alive,
    or (fresh) a new TLS connection per POST."""
    import http.client

    from server.tls import CCM8

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CCM8)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(trust)
    counts = [0] * threads
    deadline = time.monotonic() + seconds
    headers = {"Content-Type": "application/sep+xml", "Content-Length": str(len(body))}

    def run(i: int) -> None:
        conn = None
        while time.monotonic() < deadline:
            if conn is None:
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
            conn.request("POST", f"/ceiling/{i}", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status == 201:
                counts[i] += 1
            if fresh or resp.will_close:
                conn.close()
                conn = None

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put(sum(counts))


def receiver_ceiling(pki: Any, seconds: float, sample_body: bytes) -> dict[str, Any]:
    """The receiver's own ceiling: its CPU per notification, keep-alive and with a handshake each."""
    out: dict[str, Any] = {"body_bytes": len(sample_body)}
    ctx = mp.get_context("spawn")
    for mode, fresh in (("keepalive", False), ("handshake", True)):
        rx = ReceiverProc(pki, 1, close_each=fresh)
        try:
            q = ctx.Queue()
            procs = [ctx.Process(target=blaster_main, args=(str(pki.server_cert_path), str(pki.server_key_path),
                                                            str(pki.trust_path), rx.ports[0], 2, seconds, fresh,
                                                            sample_body, q)) for _ in range(2)]
            c0 = _proc_cpu(rx.proc.pid)[0]  # type: ignore[index]
            t0 = time.monotonic()
            for p in procs:
                p.start()
            sent = sum(q.get(timeout=seconds + 60) for _ in procs)
            wall = time.monotonic() - t0
            for p in procs:
                p.join(10)
            got, conns = rx.ask("count")
            cpu = _proc_cpu(rx.proc.pid)[0] - c0  # type: ignore[index]
        finally:
            rx.stop()
        per = cpu / max(got, 1)
        out[mode] = {"received": got, "sent_ok": sent, "connections": conns, "wall_s": round(wall, 2),
                     "rate_with_blasters_per_s": round(got / wall), "receiver_cpu_s": round(cpu, 2),
                     "receiver_cpu_us_per_notification": round(per * 1e6, 1),
                     "receiver_ceiling_one_core_per_s": round(1 / per) if per else None}
        say(f"  receiver ceiling, {mode}: {got / wall:,.0f}/s with 4 blaster connections on the same 2 cores; "
            f"receiver CPU {per * 1e6:,.0f} µs per notification → {1 / per if per else 0:,.0f}/s on one core")
    return out


# ----------------------------------------------------------------------------------- producer


def producer_main(url: str, program_id: int, device_ids: list[int], rate: float, seconds: float, tick_s: float,
                  start_at: float, out: Any) -> None:
    """A process: open loop, `rate` per-device DERControls a second, written `tick_s` worth per
    transaction through derp.create_events (events + their ControlCreated facts). Sends back
    (mrid, commit time) for each and how late the ticks were."""
    from server.db.session import Database
    from server.sep2.derp import DERControlBase
    from server.services.sep2 import derp

    db = Database(url)
    per_tick = rate * tick_s
    owed, made, k = 0.0, [], 0
    seq: dict[int, int] = {}
    lateness = []
    error = None
    n = len(device_ids)
    ticks = int(round(seconds / tick_s))
    base_start = int(start_at) + 7200
    while time.time() < start_at:
        time.sleep(0.001)
    for t in range(ticks):
        due = start_at + t * tick_s
        wait = due - time.time()
        if wait > 0:
            time.sleep(wait)
        lateness.append(max(0.0, time.time() - due))
        owed += per_tick
        count = int(owed)
        owed -= count
        if not count:
            continue
        controls = []
        for _ in range(count):
            d = device_ids[k % n]
            k += 1
            s = seq.get(d, 0)
            seq[d] = s + 1
            controls.append((d, DERControlBase(op_mod_max_lim_w=1000 + (k % 9000))))
        now = int(time.time())
        try:
            with db.transaction() as session:
                # one interval per tick: each device's new event starts after its previous ones
                rows = derp.create_events(session, program_id, start=base_start + 600 * (k // n), duration=300,
                                          controls=controls, now=now)
                mrids = [r.mrid for r in rows]
        except Exception as exc:  # e.g. SQLite's "database is locked" after its 30 s busy timeout
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]} (tick {t} of {ticks})"
            break
        t_commit = time.time()
        made.extend((m, t_commit) for m in mrids)
    db.dispose()
    lateness.sort()
    out.put({"made": made, "error": error, "late_p50_ms": round(1000 * lateness[len(lateness) // 2], 1) if lateness else 0,
             "late_max_ms": round(1000 * lateness[-1], 1) if lateness else 0})


# ------------------------------------------------------------------------------------- the bench


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Profiler:
    """cProfile per thread, switched on around the drainer's and notifier's passes and the send
    lanes (they run in threads of their own)."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.all: list[cProfile.Profile] = []
        self.lock = threading.Lock()

    def wrap(self, owner: Any, attr: str) -> None:
        original = getattr(owner, attr)
        me = self

        def profiled(*a: Any, **kw: Any) -> Any:
            prof = getattr(me.local, "prof", None)
            if prof is None:
                prof = me.local.prof = cProfile.Profile(time.thread_time)  # CPU, not waits
                with me.lock:
                    me.all.append(prof)
            if getattr(me.local, "on", False):
                return original(*a, **kw)
            me.local.on = True
            prof.enable()
            try:
                return original(*a, **kw)
            finally:
                prof.disable()
                me.local.on = False

        setattr(owner, attr, profiled)

    def text(self, top: int) -> str:
        buf = io.StringIO()
        stats = None
        for p in self.all:
            if stats is None:
                stats = pstats.Stats(p, stream=buf)
            else:
                stats.add(p)
        if stats is None:
            return ""
        stats.sort_stats("cumulative").print_stats(top)
        stats.sort_stats("tottime").print_stats(top)
        return buf.getvalue()


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="derflex-bench-notify-"))
        self.pg = PgDatabase(args.postgres, prefix="bench_notify") if args.postgres else None
        self.db: Any = None
        self.drainer: Any = None
        self.receivers: list[ReceiverProc] = []
        self.profiler = Profiler() if args.profile else None
        self.result: dict[str, Any] = {
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "machine": machine_info(("Flask", "SQLAlchemy", "psycopg", "lxml")),
            "config": {k: v for k, v in vars(args).items()},
            "database": "postgresql" if self.pg else "sqlite",
            "targets": TARGETS,
            "scenarios": {},
        }
        self.result["machine"]["openssl"] = ssl.OPENSSL_VERSION
        self.rng = random.Random(args.seed)
        self.lfdis: set[str] = set()

    # ---------------------------------------------------------------------------- set-up
    def setup(self) -> None:
        from server.bootstrap import prepare
        from server.config import Settings
        from server.pki import DevPKI

        if self.pg is not None:
            self.pg.create()
            self.result["postgres"] = self.pg.version()
        self.settings = Settings(home=self.tmp, database_url=self.pg.url if self.pg else "",
                                 notification_allow=("loopback",), notification_connections=self.args.connections)
        self.db = prepare(self.settings, say=lambda _m: None)
        self.pki = DevPKI(self.settings.certs_dir)
        say(f"[{self.result['database']}] fresh database {self.settings.db_url.split('@')[-1]}; home {self.tmp}")

    def start_jobs(self) -> None:
        from server.jobs.notify import Notifier, sending_for
        from server.jobs.outbox import OutboxDrainer
        from server.services.sep2.notify import Notifications

        sending = sending_for(self.settings, self.pki.server_cert_path, self.pki.server_key_path, self.pki.trust_path)
        if self.profiler is not None:
            for owner, attr in ((OutboxDrainer, "run_once"), (Notifier, "run_once"), (Notifier, "_send_lane")):
                self.profiler.wrap(owner, attr)
        notifier = Notifier(self.db, sending, default_poll_rate=self.settings.poll_rate)
        self.drainer = OutboxDrainer(self.db, [Notifications(self.settings.poll_rate)], companions=[notifier])
        self.notifier = notifier
        self.drainer.start()

    def new_lfdi(self) -> str:
        while True:
            lfdi = f"{self.rng.getrandbits(160):040X}"
            if lfdi not in self.lfdis:
                self.lfdis.add(lfdi)
                return lfdi

    def world(self, name: str, n: int, aggregators: int, uri_of: Any) -> dict[str, Any]:
        """n devices (under `aggregators` aggregators, or self-subscribing when 0), members of a new
        DER program, each with a DERControlList subscription (limit 1) to uri_of(i, device id). The
        first two subscriptions go through the service (sub.subscribe, as POST /edev/{id}/sub); the
        rest are bulk rows with the same columns, compared with the service's."""
        from sqlalchemy import insert, select

        from server.db.derp import ProgramMember
        from server.db.models import Device
        from server.db import sub as sub_store
        from server.scope import Role, Scope
        from server.sep2.identity import sfdi_from_lfdi
        from server.sep2.sub import Subscription as SubDoc
        from server.services.sep2 import derp, devices as operator, edev, sub

        now = int(time.time())
        t0 = time.perf_counter()
        aggs = [self.new_lfdi() for _ in range(aggregators)]
        lfdis = [self.new_lfdi() for _ in range(n)]
        owner = [aggs[i % aggregators] if aggregators else None for i in range(n)]
        with self.db.transaction() as s:
            for j, a in enumerate(aggs):
                operator.add_aggregator(s, a, f"{name}-agg-{j}", now)
            for k in range(0, n, CHUNK):
                s.execute(insert(Device), [
                    {"lfdi": lfdi, "sfdi": sfdi_from_lfdi(lfdi), "enabled": True, "post_rate": None,
                     "changed_time": now, "registered_time": now, "registered_by": edev.OPERATOR,
                     "aggregator_lfdi": owner[k + i], "pin": None, "pin_time": None, "label": None}
                    for i, lfdi in enumerate(lfdis[k:k + CHUNK])])
            by_lfdi = dict(s.execute(select(Device.lfdi, Device.id).where(Device.lfdi.in_(lfdis[:1])))
                           .all())
            first = by_lfdi[lfdis[0]]
            ids = list(range(first, first + n))
            got = dict(s.execute(select(Device.id, Device.lfdi).where(Device.id.in_([ids[0], ids[-1]]))).all())
            assert got == {ids[0]: lfdis[0], ids[-1]: lfdis[-1]}, "device ids are not consecutive"
            program = derp.create_der_program(s, description=name, primacy=1, now=now).id
            for k in range(0, n, CHUNK):
                s.execute(insert(ProgramMember), [{"program_id": program, "device_id": d} for d in ids[k:k + CHUNK]])
        allow = self.settings.notification_allow
        subscriber = [owner[i] or lfdis[i] for i in range(n)]

        def scope(i: int) -> Scope:
            return Scope(Role.AGGREGATOR if owner[i] else Role.DEVICE, subscriber[i])

        def resource(i: int) -> str:
            return f"/edev/{ids[i]}/derp/{program}/derc"

        with self.db.transaction() as s:
            for i in range(min(2, n)):
                doc = SubDoc(subscribed_resource=resource(i), limit=1, notification_uri=uri_of(i, ids[i]))
                sub.subscribe(s, scope(i), ids[i], doc, now, allow)
        receivers = {}
        rows = []
        for i in range(n):
            uri = uri_of(i, ids[i])
            receiver = receivers.get(uri.split("/")[2]) or sub.receiver_of(uri, allow)
            receivers[uri.split("/")[2]] = receiver
            rows.append({"device_id": ids[i], "subscriber_lfdi": subscriber[i], "resource": resource(i),
                         "target": "derc_list", "target_device_id": ids[i], "program_id": program, "fsa_id": None,
                         "der_doc": None, "notification_uri": uri, "receiver": receiver, "limit": 1, "level": "+S1",
                         "encoding": 0, "created_time": now, "updated_time": now, "base_uri": ""})
        cols = [c.name for c in sub_store.Subscription.__table__.columns if c.name != "id"]
        with self.db.transaction() as s:
            made = s.execute(select(sub_store.Subscription.__table__).where(
                sub_store.Subscription.device_id.in_(ids[:2])).order_by(sub_store.Subscription.device_id)).mappings().all()
            for i, row in enumerate(made):
                diff = {c: (row[c], rows[i][c]) for c in cols if row[c] != rows[i][c]}
                if diff:
                    raise RuntimeError(f"bulk subscription row differs from the service's: {diff}")
            for k in range(2, n, CHUNK):
                s.execute(insert(sub_store.Subscription), rows[max(k, 2):k + CHUNK])
            sub_ids = list(s.scalars(select(sub_store.Subscription.id).where(sub_store.Subscription.program_id == program)))
        if self.pg is not None:
            with self.db.engine.connect() as c:
                c.exec_driver_sql("ANALYZE")
                c.commit()
        say(f"  {name}: {n:,} devices, {aggregators or n:,} subscribers, {len(set(receivers.values())):,} receivers, "
            f"DER program {program}, {len(sub_ids):,} DERControlList subscriptions in {time.perf_counter() - t0:.1f} s")
        return {"program": program, "ids": ids, "sub_ids": sub_ids}

    # --------------------------------------------------------------------------- counting
    def queued(self, sub_ids: list[int]) -> list[tuple[int, str, str, str, str]]:
        """(id, key, uri, body hash, state) of the notifications queued for these subscriptions."""
        from sqlalchemy import select

        from server.db import sub as sub_store

        n = sub_store.Notification
        out = []
        with self.db.read() as c:
            lo, hi = min(sub_ids), max(sub_ids)
            for row in c.execute(select(n.id, n.key, n.uri, n.body, n.state, n.subscription_id)
                                 .where(n.subscription_id.between(lo, hi))):
                out.append((row.id, row.key, row.uri, digest(row.body.encode("utf-8")), row.state))
        return out

    def event_ordinals(self, world: dict[str, Any]) -> tuple[dict[str, int], dict[str, str]]:
        """Per event mRID of the world's program: its ordinal among its device's events (1, 2, …)
        and the notification URI of that device's subscription."""
        from sqlalchemy import select

        from server.db import sub as sub_store
        from server.db.derp import DerEvent

        with self.db.read() as c:
            uris = dict(c.execute(select(sub_store.Subscription.target_device_id, sub_store.Subscription.notification_uri)
                                  .where(sub_store.Subscription.program_id == world["program"])).all())
            rows = c.execute(select(DerEvent.mrid, DerEvent.device_id).where(DerEvent.program_id == world["program"])
                             .order_by(DerEvent.id)).all()
        ordinal, uri_of, n = {}, {}, Counter()
        for mrid, device in rows:
            n[device] += 1
            ordinal[mrid], uri_of[mrid] = n[device], uris.get(device, "")
        return ordinal, uri_of

    def wait_for(self, rx: list[ReceiverProc], expected: int, timeout: float, t0: float, label: str) -> float:
        """Until the receivers hold `expected` notifications (or `timeout`); seconds waited."""
        deadline = time.time() + timeout
        last = 0.0
        while time.time() < deadline:
            got = sum(r.ask("count")[0] for r in rx)
            if got >= expected:
                break
            if time.time() - last >= 2:
                last = time.time()
                say(f"    {label}: {got:,}/{expected:,} received at +{time.time() - t0:.1f} s")
            time.sleep(0.05)
        return time.time() - t0

    def match(self, rows: list[Any], records: list[tuple[float, int, str, str, int]]) -> dict[str, Any]:
        want = Counter((uri, h) for _id, _key, uri, h, _state in rows)
        got = Counter((f"https://127.0.0.1:{port}{path}", h) for _t, port, path, h, _all in records)
        lost = sum(max(0, c - got.get(k, 0)) for k, c in want.items())
        doubled = sum(max(0, c - want.get(k, 0)) for k, c in got.items())
        return {"queued": len(rows), "received": len(records), "lost": lost, "doubled_or_unknown": doubled,
                "states": dict(Counter(r[4] for r in rows))}

    # ------------------------------------------------------------------------ sustained
    def sustained(self, name: str, rate: float, world: dict[str, Any], rx: ReceiverProc) -> dict[str, Any]:
        args = self.args
        rx.ask("reset")
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        start_at = time.time() + 3.0  # the producer's interpreter starts meanwhile
        prod = ctx.Process(target=producer_main, args=(self.db.url, world["program"], world["ids"], rate, args.seconds,
                                                       args.tick_ms / 1000, start_at, q), daemon=True)
        prod.start()
        while time.time() < start_at - 0.2:
            time.sleep(0.05)
        pids = {"bench": os.getpid(), "producer": prod.pid, "receiver": rx.proc.pid}
        c0 = cpu_snapshot(pids)
        expected_n = int(rate * args.seconds)
        timeline = []
        t_end_produce = start_at + args.seconds
        deadline = t_end_produce + args.drain_timeout
        last_say = 0.0
        while time.time() < deadline:
            got, _ = rx.ask("count")
            timeline.append((time.time() - start_at, got))
            if time.time() > t_end_produce and got >= expected_n:
                break
            if time.time() - last_say >= 5:
                last_say = time.time()
                say(f"    {name} @ {rate:,.0f}/s: {got:,} received at +{time.time() - start_at:.0f} s")
            time.sleep(0.25)
            if not prod.is_alive() and q.empty() and time.time() < t_end_produce:
                raise RuntimeError("the producer died")
        c1 = cpu_snapshot(pids)
        produced = q.get(timeout=120)
        prod.join(10)
        made = dict(produced["made"])
        records = rx.ask("dump")
        rows = self.queued(world["sub_ids"])
        counted = self.match(rows, records)
        # Each change must reach its subscriber: the fact of a device's j-th event is delivered by
        # the first notification to that device's URI whose DERControlList counts j or more
        # events (changes handed over together are told in one notification of the latest state).
        ordinal, uri_of = self.event_ordinals(world)
        firsts: dict[str, list[tuple[int, float]]] = {}
        for t, port, path, _h, count in sorted(records):
            seen = firsts.setdefault(f"https://127.0.0.1:{port}{path}", [])
            if count > (seen[-1][0] if seen else 0):
                seen.append((count, t))
        lat, lost_facts = [], 0
        for mrid, t_commit in made.items():
            j, uri = ordinal[mrid], uri_of[mrid]
            seen = firsts.get(uri, [])
            k = bisect.bisect_left([c for c, _ in seen], j)
            if k == len(seen):
                lost_facts += 1
            else:
                lat.append(seen[k][1] - t_commit)
        counted["facts"] = len(made)
        counted["facts_not_delivered"] = lost_facts
        counted["lost"] += lost_facts
        counted["coalesced"] = len(made) - counted["queued"]
        arrivals = sorted(r[0] for r in records)
        # steady state: the middle 80 % of the producing phase
        lo, hi = start_at + 0.1 * args.seconds, start_at + 0.9 * args.seconds
        steady = sum(1 for t in arrivals if lo <= t < hi) / (hi - lo)
        per_s = Counter(int(t - start_at) for t in arrivals if start_at <= t < start_at + args.seconds)
        secs = [per_s.get(i, 0) for i in range(1, int(args.seconds) - 1)]
        commits = sorted(made.values())
        backlog_max, onset = 0, None
        for t_rel, got in timeline:
            t = start_at + t_rel
            b = bisect.bisect_right(commits, t) - got
            if b > backlog_max:
                backlog_max = b
            if onset is None and b > max(rate, 50) and t_rel < args.seconds:
                onset = round(t_rel, 1)
        last = arrivals[-1] if arrivals else start_at
        out = {
            "offered_per_s": rate, "seconds": args.seconds, **counted,
            "delivered_steady_per_s": round(steady, 1),
            "delivered_per_s_min_max": [min(secs), max(secs)] if secs else None,
            "delivered_overall_per_s": round(len(arrivals) / max(last - start_at, 1e-9), 1),
            "drained_after_s": round(last - t_end_produce, 2),
            "backlog_max": backlog_max, "backlog_onset_s": onset,
            "latency_ms": {"p50": _ms(pct(lat, 0.5)), "p90": _ms(pct(lat, 0.9)), "p99": _ms(pct(lat, 0.99)),
                           "max": _ms(max(lat) if lat else None), "n": len(lat)},
            "producer_late_ms": {"p50": produced["late_p50_ms"], "max": produced["late_max_ms"]},
            "producer_error": produced["error"],
            "receiver_connections": rx.ask("count")[1],
            "cpu_s": cpu_delta(c0, c1),
        }
        out["server_cpu_us_per_notification"] = round(1e6 * out["cpu_s"]["bench"] / max(len(arrivals), 1))
        ok = (out["lost"] == 0 and out["doubled_or_unknown"] == 0 and out["drained_after_s"] < 2.0
              and not produced["error"])
        out["sustained"] = ok
        say(f"  {name} @ {rate:,.0f}/s offered: {out['delivered_steady_per_s']:,.0f}/s delivered (steady), "
            f"lost {out['lost']}, doubled {out['doubled_or_unknown']}, backlog max {backlog_max:,}"
            f"{f' from {onset} s' if onset is not None else ''}, drained {out['drained_after_s']} s after; "
            f"p50 {out['latency_ms']['p50']} ms, p99 {out['latency_ms']['p99']} ms; "
            f"{out['receiver_connections']:,} connections; CPU {out['cpu_s']} "
            f"({out['server_cpu_us_per_notification']} µs per notification in drainer + notifier)"
            + (f"; THE WRITER FAILED: {produced['error']}" if produced["error"] else ""))
        return out

    # --------------------------------------------------------------------------- fan-out
    def fanout(self, world: dict[str, Any], rx: ReceiverProc) -> dict[str, Any]:
        from server.sep2.derp import DERControlBase
        from server.services.sep2 import derp

        args = self.args
        out: dict[str, Any] = {"devices": len(world["ids"]), "aggregators": args.aggregators}
        n = len(world["ids"])
        for variant in ("operator_event", "window"):
            rx.ask("reset")
            pids = {"bench": os.getpid(), "receiver": rx.proc.pid}
            c0 = cpu_snapshot(pids)
            now = int(time.time())
            start = now + 3600 + (0 if variant == "operator_event" else 1800)
            t_write = time.time()
            with self.db.transaction() as s:
                if variant == "operator_event":
                    controls = [(None, DERControlBase(op_mod_max_lim_w=4000))]
                else:
                    controls = [(d, DERControlBase(op_mod_max_lim_w=1000 + i % 5000)) for i, d in enumerate(world["ids"])]
                derp.create_events(s, world["program"], start=start, duration=900, controls=controls, now=now)
                t_before_commit = time.time()
            t0 = time.time()
            self.drainer.wake()
            waited = self.wait_for([rx], n, args.fanout_timeout, t0, f"fan-out ({variant})")
            c1 = cpu_snapshot(pids)
            records = rx.ask("dump")
            rows = [r for r in self.queued(world["sub_ids"]) if r[0] > out.get("_last_id", 0)]
            out["_last_id"] = max((r[0] for r in rows), default=out.get("_last_id", 0))
            counted = self.match(rows, records)
            counted["expected"] = n
            counted["lost"] += max(0, n - counted["queued"])
            arrivals = sorted(r[0] for r in records)
            lat = [t - t0 for t in arrivals]
            res = {"write_s": round(t0 - t_write, 3), "commit_s": round(t0 - t_before_commit, 3), **counted,
                   "first_s": round(lat[0], 2) if lat else None, "p50_s": round(pct(lat, 0.5) or 0, 2),
                   "p99_s": round(pct(lat, 0.99) or 0, 2), "all_delivered_s": round(lat[-1], 2) if lat and
                   counted["received"] >= n else None, "waited_s": round(waited, 1),
                   "rate_per_s": round(len(lat) / max(lat[-1], 1e-9)) if lat else 0,
                   "receiver_connections": rx.ask("count")[1], "cpu_s": cpu_delta(c0, c1)}
            out[variant] = res
            say(f"  fan-out ({variant}) to {n:,}: written in {res['write_s']} s; first at {res['first_s']} s, "
                f"all at {res['all_delivered_s']} s ({res['rate_per_s']:,}/s), lost {res['lost']}, doubled "
                f"{res['doubled_or_unknown']}; CPU {res['cpu_s']}")
        out.pop("_last_id", None)
        return out

    # ----------------------------------------------------------------------------- run
    def run(self) -> None:
        args = self.args
        self.setup()
        from server.sep2.derp import DERControlBase  # noqa: F401  (warm the imports before timing)

        if not args.no_ceiling:
            sample = ("<Notification xmlns=\"urn:ieee:std:2030.5:ns\">" + "x" * 1400 + "</Notification>").encode()
            self.result["receiver_ceiling"] = receiver_ceiling(self.pki, args.ceiling_seconds, sample)
        scenarios = args.scenarios or ["keepalive", "handshake", "fanout"]
        worlds = {}
        rx_keep = ReceiverProc(self.pki, 1)
        self.receivers.append(rx_keep)
        port = rx_keep.ports[0]
        if "keepalive" in scenarios:
            worlds["keepalive"] = self.world("keepalive", args.devices, 1,
                                             lambda i, d: f"https://127.0.0.1:{port}/agg/{d}")
        if "handshake" in scenarios:
            rx_hs = ReceiverProc(self.pki, args.hs_receivers, close_each=True)
            self.receivers.append(rx_hs)
            hs_ports = rx_hs.ports
            worlds["handshake"] = self.world("handshake", args.hs_devices, 0,
                                             lambda i, d: f"https://127.0.0.1:{hs_ports[i % len(hs_ports)]}/dev/{d}")
        if "fanout" in scenarios:
            rx_fan = ReceiverProc(self.pki, args.aggregators)
            self.receivers.append(rx_fan)
            fan_ports = rx_fan.ports
            worlds["fanout"] = self.world("fanout", args.fanout_devices, args.aggregators,
                                          lambda i, d: f"https://127.0.0.1:{fan_ports[i % args.aggregators]}/agg/{d}")
        self.start_jobs()
        time.sleep(1.0)
        if "keepalive" in scenarios:
            self.result["scenarios"]["keepalive"] = [self.sustained("keepalive", r, worlds["keepalive"], rx_keep)
                                                     for r in (args.rate or [TARGETS["keepalive"]])]
        if "handshake" in scenarios:
            self.result["scenarios"]["handshake"] = [self.sustained("handshake", r, worlds["handshake"], rx_hs)
                                                     for r in (args.hs_rate or [TARGETS["handshake"]])]
        if "fanout" in scenarios:
            self.result["scenarios"]["fanout"] = self.fanout(worlds["fanout"], rx_fan)
        self.result["notifier"] = {"sent": self.notifier.sent, "failed": self.notifier.failed}
        if self.profiler is not None:
            self.drainer.stop()
            text = self.profiler.text(args.profile_top)
            self.result["profile"] = text
            print(text)

    def close(self) -> None:
        if self.drainer is not None:
            self.drainer.stop()
        for rx in self.receivers:
            rx.stop()
        if self.db is not None:
            self.db.dispose()
        if self.pg is not None:
            try:
                self.pg.drop()
            except Exception as exc:  # report, do not hide the run's own error
                say(f"could not drop {self.pg.name}: {exc}")
        if self.args.keep:
            say(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--postgres", metavar="URL", help="run on PostgreSQL at URL (a private database is made and "
                   "dropped), e.g. postgresql://postgres@127.0.0.1:5432/test; default: SQLite in a temporary home")
    p.add_argument("--scenarios", action="append", choices=("keepalive", "handshake", "fanout"),
                   help="run only these (repeat the option); default: all three")
    p.add_argument("--rate", action="append", type=float, help="keepalive: offered notifications/s (repeat for a "
                   f"sweep); default {TARGETS['keepalive']:.0f}")
    p.add_argument("--hs-rate", action="append", type=float, help="handshake: offered notifications/s (repeat); "
                   f"default {TARGETS['handshake']:.0f}")
    p.add_argument("--seconds", type=float, default=30.0, help="producing phase of each sustained run")
    p.add_argument("--tick-ms", type=float, default=100.0, help="the producer writes this many ms worth per transaction")
    p.add_argument("--devices", type=int, default=5000, help="keepalive: devices of the one aggregator (with --rate "
                   "1,000 for 30 s each gets 6 events: a device's list stays short, as in life)")
    p.add_argument("--hs-devices", type=int, default=2000, help="handshake: devices subscribing themselves")
    p.add_argument("--hs-receivers", type=int, default=500, help="handshake: receiver ports (device i uses port i mod this)")
    p.add_argument("--fanout-devices", type=int, default=10_000, help="fanout: subscribed devices")
    p.add_argument("--aggregators", type=int, default=10, help="fanout: aggregators (a receiver port each)")
    p.add_argument("--connections", type=int, default=2, help="DERFLEX_NOTIFICATION_CONNECTIONS (lanes per receiver)")
    p.add_argument("--drain-timeout", type=float, default=60.0, help="after producing, wait at most this long")
    p.add_argument("--fanout-timeout", type=float, default=180.0, help="wait at most this long for a fan-out")
    p.add_argument("--no-ceiling", action="store_true", help="skip measuring the receiver's own ceiling")
    p.add_argument("--ceiling-seconds", type=float, default=5.0)
    p.add_argument("--quick", action="store_true", help="smoke run: 10 s phases, 2,000 fan-out devices")
    p.add_argument("--profile", action="store_true", help="cProfile the drainer and notifier threads (slower; "
                   "rates not comparable)")
    p.add_argument("--profile-top", type=int, default=35)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="folder for the results JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds = min(args.seconds, 10.0)
        args.fanout_devices = min(args.fanout_devices, 2000)
        args.ceiling_seconds = min(args.ceiling_seconds, 3.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    try:
        bench.run()
    finally:
        bench.close()
        bench.result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        args.out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = args.out / f"notify-{bench.result['database']}-{stamp}.json"
        path.write_text(json.dumps(bench.result, indent=2, default=str))
        say(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

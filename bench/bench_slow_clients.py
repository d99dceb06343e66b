#!/usr/bin/env python
"""Slow clients: do silent and byte-a-second connections slow well-behaved devices down?

One run (everything on 127.0.0.1, every wait bounded):

  1. A fresh home prepared like a first `derflex serve`; --devices certificates issued in bulk and
     registered out of band in one transaction.
  2. `derflex serve` as a real process (server.serve.run: TLS 1.2 CCM8, client certificates, its
     default limits; the Beckn BPP off, it is not measured here). --stock-gthread runs it with
     gunicorn's plain gthread worker instead of server/front.py's: the "before".
  3. --devices simulated devices (der_sim's keep-alive mTLS transport, one connection each) on
     --client-threads threads, each polling GET /dcap then GET /edev/{own id} every --poll-seconds,
     their first polls spread over one interval. A warm-up of one interval (every device connects)
     is not measured.
  4. Quiet phase: --quiet-seconds of polling alone.
  5. Attack phase: a separate process (der_sim.slow_clients) holds --silent TCP connections that
     send nothing and --slow TLS connections (a valid device certificate, handshake done) that send
     a request head one byte a second and never finish it, each reopened when the server drops
     it, from --attack-sources loopback addresses (127.0.0.2 …); once all are open, --attack-seconds
     of polling are measured.
  6. Per phase: device requests, failed (status >= 400 or no answer within the client's 10 s),
     exact latency p50/p90/p99/max, polls started late; the p99 ratio attack/quiet (target <= 2,
     failed 0); the attackers' counts (opened, dropped by the server, how long they lived); server
     CPU per phase; the machine. Progress every 5 s; JSON to bench/results/slow-clients-<UTC>.json.

Examples:
    .venv/bin/python bench/bench_slow_clients.py --smoke             # ~1 minute, 200 devices
    .venv/bin/python bench/bench_slow_clients.py                     # 2,000 devices, ~4 minutes
    .venv/bin/python bench/bench_slow_clients.py --stock-gthread     # the same against the old worker
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import heapq
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for p in (str(REPO), str(REPO / "bench")):
    if p not in sys.path:
        sys.path.insert(0, p)

from benchlib import machine_info  # noqa: E402

HOST = "127.0.0.1"


def _say(msg: str) -> None:
    print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------ the server process


def _serve_main(config_json: str) -> None:
    cfg = json.loads(config_json)
    import server.serve as serve
    from server.config import Settings

    if cfg["stock_gthread"]:
        serve._front_worker = lambda _settings: "gthread"  # the "before": gunicorn's own gthread
    settings = Settings(home=Path(cfg["home"]), bind=cfg["bind"], workers=cfg["workers"],
                        threads=cfg["threads"], beckn_bind="")
    serve.run(settings)


# --------------------------------------------------------------------- the attacker process


def _attack_main(config_json: str) -> None:
    cfg = json.loads(config_json)
    from der_sim.slow_clients import SlowClients
    from server.tls import client_context

    tls = client_context(Path(cfg["cert"]), Path(cfg["key"]), Path(cfg["trust"]))
    sources = tuple(f"127.0.0.{2 + i}" for i in range(cfg["sources"]))
    crowd = SlowClients(HOST, cfg["port"], silent=cfg["silent"], slow=cfg["slow"], tls=tls, sources=sources).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_a: stop.set())
    opened = crowd.wait_open(cfg["open_timeout"])
    print(json.dumps({"event": "open", "all_open": opened, **crowd.stats()}), flush=True)
    while not stop.wait(5):
        print(json.dumps({"event": "progress", **crowd.stats()}), flush=True)
    print(json.dumps({"event": "end", **crowd.stop()}), flush=True)


# ----------------------------------------------------------------------- devices (this process)


class Phase:
    """Every request's latency (exact percentiles), failures, polls started late."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.failed = 0
        self.errors: dict[str, int] = {}
        self.late_polls = 0
        self.polls = 0
        self.began = time.monotonic()
        self.ended: float | None = None
        self.cpu_start = 0.0
        self.cpu_end = 0.0

    def record(self, seconds: float, error: str | None) -> None:
        with self.lock:
            bisect.insort(self.latencies, seconds)
            if error is not None:
                self.failed += 1
                self.errors[error] = self.errors.get(error, 0) + 1

    def summary(self) -> dict[str, Any]:
        with self.lock:
            xs = list(self.latencies)
            span = (self.ended or time.monotonic()) - self.began

        def pct(q: float) -> float | None:
            return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000, 1) if xs else None

        return {"seconds": round(span, 1), "requests": len(xs), "req_per_s": round(len(xs) / span, 1) if span else 0,
                "failed": self.failed, "errors": self.errors, "polls": self.polls, "late_polls": self.late_polls,
                "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99),
                "max_ms": round(xs[-1] * 1000, 1) if xs else None,
                "server_cpu_share_of_one_core": round((self.cpu_end - self.cpu_start) / span, 3) if span else None}


class Devices:
    def __init__(self, creds: list[tuple[Path, Path, int]], trust: Path, port: int, poll: float, threads: int):
        self.creds, self.trust, self.port, self.poll = creds, trust, port, poll
        self.phase = Phase("warm-up")
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i, threads), daemon=True) for i in range(threads)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def _run(self, index: int, count: int) -> None:
        from der_sim.client import HttpsTransport
        from server.tls import client_context

        mine = self.creds[index::count]
        t0 = time.monotonic()
        due = [(t0 + self.poll * (index + count * k) / len(self.creds), k) for k in range(len(mine))]
        heapq.heapify(due)
        transports: dict[int, Any] = {}
        headers = {"Accept": "application/sep+xml"}
        while due and not self.stop.is_set():
            when, k = heapq.heappop(due)
            wait = when - time.monotonic()
            if wait > 0 and self.stop.wait(wait):
                break
            phase = self.phase
            with phase.lock:
                phase.polls += 1
                if time.monotonic() - when > 1.0:
                    phase.late_polls += 1
            cert, key, edev_id = mine[k]
            transport = transports.get(k)
            if transport is None:
                transport = transports[k] = HttpsTransport(HOST, self.port, client_context(cert, key, self.trust),
                                                           timeout=10.0)
            for path in ("/dcap", f"/edev/{edev_id}"):
                began = time.perf_counter()
                error = None
                try:
                    status, _h, _body = transport.request("GET", path, None, headers)
                    if status != 200:
                        error = f"HTTP {status}"
                except Exception as exc:  # noqa: BLE001 - every failure is counted by its kind
                    error = type(exc).__name__
                phase.record(time.perf_counter() - began, error)
            heapq.heappush(due, (when + self.poll, k))
        for t in transports.values():
            t.close()


# ----------------------------------------------------------------------------------- helpers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pgid: int) -> float:
    """utime + stime of every live process in the server's process group."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields[0] is the state: pgrp is the 5th field overall
            total += int(fields[11]) + int(fields[12])
    return total / tick


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--devices", type=int, default=2000, help="simulated devices, one keep-alive connection each")
    p.add_argument("--poll-seconds", type=float, default=20.0, help="each device polls /dcap and its /edev this often")
    p.add_argument("--client-threads", type=int, default=40, help="threads the devices run on (this process)")
    p.add_argument("--silent", type=int, default=500, help="TCP connections that send nothing")
    p.add_argument("--slow", type=int, default=100, help="TLS connections that send a request head a byte a second")
    p.add_argument("--attack-sources", type=int, default=10, help="loopback source addresses of the attackers (127.0.0.2 …)")
    p.add_argument("--quiet-seconds", type=float, default=60.0)
    p.add_argument("--attack-seconds", type=float, default=60.0)
    p.add_argument("--workers", type=int, default=1, help="server worker processes")
    p.add_argument("--threads", type=int, default=8, help="server threads per worker")
    p.add_argument("--stock-gthread", action="store_true", help="serve with gunicorn's plain gthread worker (before)")
    p.add_argument("--smoke", action="store_true", help="200 devices, 100 silent, 20 slow, 20 s phases")
    p.add_argument("--out", type=Path, default=None, help="results JSON (default bench/results/slow-clients-<UTC>.json)")
    p.add_argument("--_serve", help=argparse.SUPPRESS)
    p.add_argument("--_attack", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.devices, args.silent, args.slow = 200, 100, 20
        args.quiet_seconds = args.attack_seconds = 20.0
        args.poll_seconds = 10.0
    return args


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0915 - one run, in order
    args = parse_args(argv)
    if args._serve:
        _serve_main(args._serve)
        return 0
    if args._attack:
        _attack_main(args._attack)
        return 0

    from server.bootstrap import prepare, tls_files
    from server.config import Settings
    from server.pki import DevPKI
    from server.services.sep2 import edev

    result: dict[str, Any] = {"machine": machine_info(("gunicorn", "Flask", "SQLAlchemy")), "args": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if not k.startswith("_")}}
    home = Path(tempfile.mkdtemp(prefix="derflex-slow-"))
    port = _free_port()
    server: subprocess.Popen[bytes] | None = None
    attacker: subprocess.Popen[str] | None = None
    devices: Devices | None = None
    try:
        t0 = time.perf_counter()
        settings = Settings(home=home, bind=f"{HOST}:{port}", beckn_bind="")
        db = prepare(settings, say=lambda _m: None)
        creds = DevPKI(settings.certs_dir).issue_many([f"dev-{i}" for i in range(args.devices + 1)])
        now = int(time.time())
        with db.transaction() as s:
            ids = [edev.register_out_of_band(s, c.lfdi, now, label=c.name).id for c in creds]
        db.dispose()
        trust = tls_files(settings).trust
        _say(f"{args.devices + 1} devices issued and registered in {time.perf_counter() - t0:.1f} s ({home})")

        log = (home / "server.log").open("wb")
        server = subprocess.Popen(
            [sys.executable, __file__, "--_serve", json.dumps({
                "home": str(home), "bind": f"{HOST}:{port}", "workers": args.workers, "threads": args.threads,
                "stock_gthread": args.stock_gthread})],
            stdout=log, stderr=subprocess.STDOUT, cwd=home, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((HOST, port), timeout=0.2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server did not start:\n{(home / 'server.log').read_text()[-2000:]}") from None
                time.sleep(0.1)
        _say(f"server up on {port} ({'stock gthread' if args.stock_gthread else 'server.front'} worker)")

        device_creds = [(c.cert_path, c.key_path, i) for c, i in zip(creds[1:], ids[1:], strict=True)]
        devices = Devices(device_creds, trust, port, args.poll_seconds, args.client_threads)
        phases: dict[str, Phase] = {}

        def begin(name: str) -> None:
            assert devices is not None and server is not None
            old = devices.phase
            old.ended, old.cpu_end = time.monotonic(), _cpu_seconds(server.pid)
            phases[old.name] = old
            new = Phase(name)
            new.cpu_start = old.cpu_end
            devices.phase = new

        def watch(seconds: float, extra: Any = None) -> None:
            assert devices is not None
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(min(5.0, max(0.0, end - time.monotonic())))
                s = devices.phase.summary()
                more = f"; {extra()}" if extra else ""
                _say(f"{devices.phase.name}: {s['requests']} requests, {s['failed']} failed, p50 {s['p50_ms']} ms, "
                     f"p99 {s['p99_ms']} ms, late polls {s['late_polls']}{more}")

        devices.phase.cpu_start = _cpu_seconds(server.pid)
        devices.start()
        watch(args.poll_seconds + 5)
        begin("quiet")
        watch(args.quiet_seconds)
        begin("attack-ramp")

        attacker = subprocess.Popen(
            [sys.executable, __file__, "--_attack", json.dumps({
                "port": port, "silent": args.silent, "slow": args.slow, "sources": args.attack_sources,
                "cert": str(creds[0].cert_path), "key": str(creds[0].key_path), "trust": str(trust),
                "open_timeout": 60})],
            stdout=subprocess.PIPE, text=True)
        assert attacker.stdout is not None
        reports: list[dict[str, Any]] = []

        def read_reports() -> None:
            assert attacker is not None and attacker.stdout is not None
            for line in attacker.stdout:
                reports.append(json.loads(line))

        reader = threading.Thread(target=read_reports, daemon=True)
        reader.start()
        while not reports and attacker.poll() is None:
            time.sleep(0.2)
        _say(f"attackers: {reports[0] if reports else 'no report'}")
        result["attackers_open"] = reports[0] if reports else None
        begin("attack")

        def crowd() -> str:
            last = reports[-1] if reports else {}
            return f"attackers open {last.get('open_now')}, dropped by the server {last.get('closed_by_server')}"

        watch(args.attack_seconds, crowd)
        begin("after")
        attacker.send_signal(signal.SIGTERM)
        attacker.wait(timeout=60)
        reader.join(timeout=10)
        result["attackers"] = reports[-1] if reports else None
        devices.join()
        begin("end")
        result["phases"] = {name: ph.summary() for name, ph in phases.items() if name != "end"}
        quiet, attack = result["phases"]["quiet"], result["phases"]["attack"]
        ratio = (attack["p99_ms"] / quiet["p99_ms"]) if quiet["p99_ms"] and attack["p99_ms"] else None
        result["p99_ratio_attack_over_quiet"] = round(ratio, 2) if ratio else None
        result["verdict"] = {"failed_attack": attack["failed"], "failed_quiet": quiet["failed"],
                             "p99_within_2x": bool(ratio is not None and ratio <= 2.0)}
        _say(json.dumps({"quiet": quiet, "attack": attack, "p99 ratio": result["p99_ratio_attack_over_quiet"]}, indent=1))
    finally:
        if devices is not None:
            devices.stop.set()
        if attacker is not None and attacker.poll() is None:
            attacker.kill()
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        out = args.out or REPO / "bench" / "results" / f"slow-clients-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        if "phases" in result:
            out.write_text(json.dumps(result, indent=1))
            _say(f"results: {out}")
        shutil.rmtree(home, ignore_errors=True)
    return 0 if result.get("verdict", {}).get("failed_attack") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Foundation benchmark: 2030.5 GET over keep-alive mutually authenticated TLS 1.2 (CCM8).

What it does, in one run (everything on 127.0.0.1, every loop bounded in time):

  1. Makes a temporary home, prepares it (database, dev PKI, admin token), issues --devices device
     certificates and registers them out of band in one transaction.
  2. Starts the real server as a separate process: gunicorn gthread workers, our TLS context
     (TLS 1.2, ECDHE-ECDSA-AES128-CCM8 only, client certificate required), the product Flask app
     plus ONE benchmark-only route, GET /bench/ping, that returns a fixed tiny body without touching
     the database or the client certificate. That route is "the framework's ceiling": the same
     gunicorn/TLS/Flask stack with a trivial handler. It exists only in this script's server.
  3. Keep-alive load: --clients client processes, each with its own device certificate and one
     keep-alive connection, send GETs back to back for --seconds: first the ceiling
     (/bench/ping), then the real 2030.5 resource (GET /edev/{own id}), alternating
     ceiling, real, ceiling, real (--rounds pairs) so machine drift hits both alike.
     Any status other than 200 is an error. Reports requests/s, errors, latency p50/p90/p99,
     server CPU time per request, and the ratio real/ceiling (target >= 0.80).
  4. New-handshake rate: for --seconds, each client process opens a new TLS connection (full
     handshake, no session resumption), sends one GET /bench/ping, and closes. Reports handshakes/s.
  5. Prints a table and writes JSON to bench/results/serve-<UTC timestamp>.json with the machine
     (nproc, CPU model, Python, OpenSSL, date, load average).

The server process is always stopped at the end (SIGTERM, then SIGKILL of its process group).

Example:
    .venv/bin/python bench/bench_serve.py                      # defaults, about a minute
    .venv/bin/python bench/bench_serve.py --workers 2 --clients 8
    .venv/bin/python bench/bench_serve.py --profile --rounds 1 # diagnostic: cProfile in the workers
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import multiprocessing as mp
import os
import platform
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PING_PATH = "/bench/ping"
PING_BODY = b"<Ping/>"
HOST = "127.0.0.1"

CEILING = "ceiling"
REAL = "real"
HANDSHAKE = "handshake"


# --------------------------------------------------------------------------------------------
# The server side: runs in its own process (this script re-executed with --_serve).
# --------------------------------------------------------------------------------------------


def _serve_main(config_json: str) -> None:
    """Entry point of the server process: the product server plus the ceiling route."""
    cfg = json.loads(config_json)

    from flask import Response

    from server.app import create_app
    from server.config import Settings
    from server.serve import DerflexServer

    settings = Settings(
        home=Path(cfg["home"]),
        bind=cfg["bind"],
        workers=cfg["workers"],
        threads=cfg["threads"],
        response_cache_seconds=cfg["response_cache"],
    )
    profile_dir = Path(cfg["profile_dir"]) if cfg.get("profile_dir") else None

    class BenchServer(DerflexServer):
        """DerflexServer with one extra trivial route; nothing else differs."""

        def load_config(self) -> None:
            super().load_config()
            if profile_dir is not None:
                self.cfg.set("worker_exit", _dump_profiles)

        def load(self) -> Any:
            app = create_app(self.settings)

            def bench_ping() -> Response:
                return Response(PING_BODY, content_type="application/sep+xml")

            app.add_url_rule(PING_PATH, "bench_ping", bench_ping, methods=["GET"])
            if profile_dir is not None:
                app.wsgi_app = _profiled(app.wsgi_app)  # type: ignore[method-assign]
            return app

    _PROFILE_STATE["dir"] = profile_dir
    BenchServer(settings).run()


# Diagnostic profiling (--profile): one cProfile.Profile per (worker thread, scenario), enabled
# around the WSGI call only, so it sees what the Flask side costs (not gunicorn's TLS and parsing),
# in thread CPU time.
_PROFILE_STATE: dict[str, Any] = {"dir": None, "profilers": {}, "lock": threading.Lock()}


def _profiled(wsgi_app: Any) -> Any:
    import cProfile

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        kind = CEILING if environ.get("PATH_INFO") == PING_PATH else REAL
        key = (threading.get_ident(), kind)
        prof = _PROFILE_STATE["profilers"].get(key)
        if prof is None:
            # Thread CPU time, not wall time: waiting for the GIL (which sqlite3 releases around
            # every call) would otherwise be charged to whatever call was waiting.
            prof = cProfile.Profile(time.thread_time_ns, 1e-9)
            with _PROFILE_STATE["lock"]:
                _PROFILE_STATE["profilers"][key] = prof
        prof.enable()
        try:
            return wsgi_app(environ, start_response)
        finally:
            prof.disable()

    return app


def _dump_profiles(_server: Any, _worker: Any) -> None:
    import pstats

    out: Path = _PROFILE_STATE["dir"]
    for kind in (CEILING, REAL):
        profs = [p for (_, k), p in _PROFILE_STATE["profilers"].items() if k == kind]
        if not profs:
            continue
        stats = pstats.Stats(profs[0])
        for p in profs[1:]:
            stats.add(p)
        stats.dump_stats(str(out / f"{kind}-{os.getpid()}.pstats"))


# --------------------------------------------------------------------------------------------
# The client side: persistent worker processes, one device certificate each.
# --------------------------------------------------------------------------------------------


def _client_main(
    index: int,
    cert: str,
    key: str,
    trust: str,
    port: int,
    tasks: Any,
    results: Any,
    barrier: Any,
) -> None:
    from server.tls import client_context

    ctx = client_context(Path(cert), Path(key), Path(trust))
    ctx.options |= ssl.OP_NO_TICKET  # no session tickets: every new connection is a full handshake
    while True:
        task = tasks.get()
        if task is None:
            return
        kind, path, seconds, barrier_timeout = task
        try:
            if kind == HANDSHAKE:
                res = _handshakes(ctx, port, path, seconds, barrier, barrier_timeout)
            else:
                res = _keepalive(ctx, port, path, seconds, barrier, barrier_timeout)
        except Exception as exc:  # report, never hang the coordinator
            res = {"fatal": f"{type(exc).__name__}: {exc}"}
        res["client"] = index
        results.put(res)


def _new_conn(ctx: ssl.SSLContext, port: int) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection(HOST, port, context=ctx, timeout=10)


def _keepalive(
    ctx: ssl.SSLContext, port: int, path: str, seconds: float, barrier: Any, barrier_timeout: float
) -> dict[str, Any]:
    conn = _new_conn(ctx, port)
    body_len = 0
    for _ in range(3):  # warm-up, not counted: handshake, scope cache, first-request paths
        conn.request("GET", path)
        resp = conn.getresponse()
        body_len = len(resp.read())
        if resp.status != 200:
            raise RuntimeError(f"warm-up GET {path} answered {resp.status}")
    barrier.wait(timeout=barrier_timeout)
    lat: list[float] = []
    ok = errors = 0
    statuses: dict[str, int] = {}
    first_error = None
    start = time.perf_counter()
    end = start + seconds
    now = start
    while now < end:
        t0 = now
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            now = time.perf_counter()
            if resp.status == 200:
                ok += 1
                lat.append(now - t0)
            else:
                errors += 1
                statuses[str(resp.status)] = statuses.get(str(resp.status), 0) + 1
                first_error = first_error or f"HTTP {resp.status}"
        except (OSError, http.client.HTTPException) as exc:
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"
            conn.close()
            conn = _new_conn(ctx, port)
            time.sleep(0.01)  # a refused/broken connection must not spin
            now = time.perf_counter()
    elapsed = time.perf_counter() - start
    conn.close()
    return {
        "ok": ok,
        "errors": errors,
        "statuses": statuses,
        "first_error": first_error,
        "elapsed": elapsed,
        "latencies": lat,
        "body_bytes": body_len,
    }


def _handshakes(
    ctx: ssl.SSLContext, port: int, path: str, seconds: float, barrier: Any, barrier_timeout: float
) -> dict[str, Any]:
    barrier.wait(timeout=barrier_timeout)
    lat: list[float] = []
    ok = errors = reused = 0
    first_error = None
    start = time.perf_counter()
    end = start + seconds
    now = start
    while now < end:
        t0 = now
        conn = _new_conn(ctx, port)
        try:
            conn.connect()  # full TLS 1.2 handshake with client certificate
            if conn.sock.session_reused:  # type: ignore[union-attr]
                reused += 1
            conn.request("GET", path, headers={"Connection": "close"})
            resp = conn.getresponse()
            resp.read()
            now = time.perf_counter()
            if resp.status == 200:
                ok += 1
                lat.append(now - t0)
            else:
                errors += 1
                first_error = first_error or f"HTTP {resp.status}"
        except (OSError, http.client.HTTPException) as exc:
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"
            time.sleep(0.01)
            now = time.perf_counter()
        finally:
            conn.close()
    elapsed = time.perf_counter() - start
    return {
        "ok": ok,
        "errors": errors,
        "statuses": {},
        "first_error": first_error,
        "elapsed": elapsed,
        "latencies": lat,
        "resumed_sessions": reused,
    }


# --------------------------------------------------------------------------------------------
# The coordinator.
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _cpu_ticks(root_pid: int) -> dict[int, int]:
    """utime+stime (clock ticks) per process: the gunicorn arbiter and its direct children."""
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid, ppid = int(entry), int(fields[1])
        if pid == root_pid or ppid == root_pid:
            ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[rank]


def _machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 0
    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for dist in ("gunicorn", "Flask", "SQLAlchemy", "cryptography"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = "?"
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": nproc,
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION,
        "platform": platform.platform(),
        "loadavg_start": load,
        "packages": versions,
    }


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tmp: Path | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.server_log: Path | None = None
        self.clients: list[Any] = []
        self.task_queues: list[Any] = []
        self.results: Any = None
        self.port = 0
        self.profile_dir: Path | None = None

    # ---- set-up ------------------------------------------------------------------------
    def prepare(self) -> list[tuple[str, str, str, int]]:
        from server.bootstrap import prepare, tls_files
        from server.config import Settings
        from server.pki import DevPKI
        from server.services.sep2 import derp, edev

        a = self.args
        self.tmp = Path(tempfile.mkdtemp(prefix="derflex-bench-"))
        self.port = _free_port()
        self.settings = Settings(
            home=self.tmp, bind=f"{HOST}:{self.port}", workers=a.workers, threads=a.threads
        )
        t0 = time.perf_counter()
        db = prepare(self.settings, say=lambda _m: None)
        pki = DevPKI(self.settings.certs_dir)
        creds = pki.issue_many([f"bench-{i}" for i in range(1, a.devices + 1)])
        now = int(time.time())
        with db.transaction() as s:  # all devices in one transaction
            ids = [
                edev.register_out_of_band(s, c.lfdi, now, label=c.name).id for c in creds
            ]
        self.program_id = 0
        if a.resource == "derc":
            # One program, every device a member, one scheduled DERControl per device with its own
            # setpoint: the document each device polls most.
            with db.transaction() as s:
                self.program_id = derp.create_der_program(s, description="bench", primacy=1, now=now).id
                derp.add_members(s, self.program_id, ids)
                controls = [(d, derp.control_base({"opModFixedW": (d * 37) % 10001})) for d in ids]
                derp.create_events(s, self.program_id, start=now + 3600, duration=3600, controls=controls, now=now)
        db.dispose()
        trust = str(tls_files(self.settings).trust)
        self.setup_seconds = time.perf_counter() - t0
        _say(f"home {self.tmp}: {a.devices} devices issued and registered in {self.setup_seconds:.1f} s")
        return [(str(c.cert_path), str(c.key_path), trust, i) for c, i in zip(creds, ids, strict=True)]

    def start_server(self) -> None:
        assert self.tmp is not None
        a = self.args
        if a.profile:
            self.profile_dir = self.tmp / "profiles"
            self.profile_dir.mkdir()
        config = {
            "home": str(self.tmp),
            "bind": f"{HOST}:{self.port}",
            "workers": a.workers,
            "threads": a.threads,
            "response_cache": a.response_cache,
            "profile_dir": str(self.profile_dir) if self.profile_dir else None,
        }
        self.server_log = self.tmp / "server.log"
        with self.server_log.open("wb") as out:
            self.server = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--_serve", json.dumps(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,
                start_new_session=True,  # its own process group, so a stuck server can be killed whole
            )

    def wait_ready(self, creds: tuple[str, str, str, int]) -> None:
        from server.tls import client_context

        assert self.server is not None
        ctx = client_context(Path(creds[0]), Path(creds[1]), Path(creds[2]))
        deadline = time.monotonic() + 30
        last = ""
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"server exited with {self.server.returncode}:\n{self._log_tail()}")
            try:
                conn = http.client.HTTPSConnection(HOST, self.port, context=ctx, timeout=5)
                conn.request("GET", PING_PATH)
                resp = conn.getresponse()
                resp.read()
                conn.close()
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
            except (OSError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
        raise RuntimeError(f"server not ready within 30 s ({last}):\n{self._log_tail()}")

    def start_clients(self, creds: list[tuple[str, str, str, int]]) -> None:
        ctx = mp.get_context("spawn")  # clean interpreters: nothing inherited from the coordinator
        n = self.args.clients
        self.barrier = ctx.Barrier(n)
        self.results = ctx.Queue()
        for i in range(n):
            tq = ctx.Queue()
            cert, key, trust, _ = creds[i]
            p = ctx.Process(
                target=_client_main,
                args=(i, cert, key, trust, self.port, tq, self.results, self.barrier),
                daemon=True,
                name=f"bench-client-{i}",
            )
            p.start()
            self.clients.append(p)
            self.task_queues.append(tq)

    # ---- one scenario ------------------------------------------------------------------
    def run_scenario(self, kind: str, paths: list[str], seconds: float) -> dict[str, Any]:
        assert self.server is not None
        barrier_timeout = 60.0
        for tq, path in zip(self.task_queues, paths, strict=True):
            tq.put((kind if kind == HANDSHAKE else "keepalive", path, seconds, barrier_timeout))
        # CPU is sampled from the moment tasks are sent: clients warm up first (a few requests
        # each), which the request counts below leave out; the error is < 1 % at 10 s.
        cpu0 = _cpu_ticks(self.server.pid)
        wall0 = time.perf_counter()
        parts = []
        deadline = time.monotonic() + barrier_timeout + seconds + 30
        while len(parts) < len(self.task_queues):
            try:
                parts.append(self.results.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                raise RuntimeError(f"{kind}: clients did not report within the time limit") from None
        wall = time.perf_counter() - wall0
        cpu1 = _cpu_ticks(self.server.pid)
        hz = os.sysconf("SC_CLK_TCK")
        per_pid = {pid: (t - cpu0.get(pid, 0)) / hz for pid, t in cpu1.items()}
        cpu_s = sum(per_pid.values())
        # How the keep-alive connections landed on workers: the kernel hands each new connection
        # to whichever worker accepts first, so with several workers the split varies per round.
        worker_cpu = sorted((v for pid, v in per_pid.items() if pid != self.server.pid), reverse=True)
        fatal = [p["fatal"] for p in parts if "fatal" in p]
        if fatal:
            raise RuntimeError(f"{kind}: client failed: {fatal[0]}\n{self._log_tail()}")
        lat = sorted(x for p in parts for x in p["latencies"])
        ok = sum(p["ok"] for p in parts)
        errors = sum(p["errors"] for p in parts)
        elapsed = max(p["elapsed"] for p in parts)
        statuses: dict[str, int] = {}
        for p in parts:
            for k, v in p["statuses"].items():
                statuses[k] = statuses.get(k, 0) + v
        return {
            "scenario": kind,
            "paths": sorted(set(paths)) if kind != REAL else f"{self.real_label} x{len(paths)}",
            "seconds": elapsed,
            "ok": ok,
            "errors": errors,
            "statuses": statuses,
            "first_error": next((p["first_error"] for p in parts if p["first_error"]), None),
            "rate": ok / elapsed if elapsed else 0.0,
            "p50_ms": _ms(_percentile(lat, 50)),
            "p90_ms": _ms(_percentile(lat, 90)),
            "p99_ms": _ms(_percentile(lat, 99)),
            "max_ms": _ms(lat[-1] if lat else None),
            "server_cpu_s": cpu_s,
            "server_cpu_us_per_req": cpu_s / ok * 1e6 if ok else None,
            "server_cpu_share": cpu_s / wall if wall else None,
            "worker_cpu_shares": [round(v / wall, 3) for v in worker_cpu] if wall else [],
            "body_bytes": max((p.get("body_bytes", 0) for p in parts), default=0),
            "resumed_sessions": sum(p.get("resumed_sessions", 0) for p in parts),
            "_lat": lat,
        }

    # ---- tear-down ---------------------------------------------------------------------
    def stop(self) -> None:
        for tq in self.task_queues:
            try:
                tq.put(None)
            except Exception:
                pass
        for p in self.clients:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.server.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.server.wait(timeout=10)

    def cleanup(self) -> None:
        if self.tmp is not None and not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _log_tail(self, n: int = 40) -> str:
        if self.server_log is None or not self.server_log.exists():
            return ""
        return "\n".join(self.server_log.read_text(errors="replace").splitlines()[-n:])


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.0f} %"


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'scenario':<10} {'round':>5} {'req/s':>9} {'ok':>8} {'err':>5} "
        f"{'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'srv CPU µs/req':>15} {'srv CPU':>8} "
        f"{'per worker':>12}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['scenario']:<10} {r.get('round', ''):>5} {r['rate']:>9.1f} {r['ok']:>8} "
            f"{r['errors']:>5} {_fmt(r['p50_ms']):>7} {_fmt(r['p90_ms']):>7} "
            f"{_fmt(r['p99_ms']):>7} {_fmt(r['server_cpu_us_per_req'], '.0f'):>15} "
            f"{_pct(r['server_cpu_share']):>8} "
            f"{'/'.join(f'{x * 100:.0f}' for x in r.get('worker_cpu_shares') or []) or '-':>12}"
        )
    return "\n".join(lines)


def _combine(rows: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    lat = sorted(x for r in rows for x in r["_lat"])
    ok = sum(r["ok"] for r in rows)
    secs = sum(r["seconds"] for r in rows)
    cpu = sum(r["server_cpu_s"] for r in rows)
    return {
        "scenario": kind,
        "round": "all",
        "seconds": secs,
        "ok": ok,
        "errors": sum(r["errors"] for r in rows),
        "rate": ok / secs if secs else 0.0,
        "p50_ms": _ms(_percentile(lat, 50)),
        "p90_ms": _ms(_percentile(lat, 90)),
        "p99_ms": _ms(_percentile(lat, 99)),
        "max_ms": _ms(lat[-1] if lat else None),
        "server_cpu_s": cpu,
        "server_cpu_us_per_req": cpu / ok * 1e6 if ok else None,
        "server_cpu_share": None,
        "body_bytes": max(r["body_bytes"] for r in rows),
    }


def _print_profiles(profile_dir: Path, top: int) -> dict[str, str]:
    import io
    import pstats

    out = {}
    for kind in (CEILING, REAL):
        files = sorted(profile_dir.glob(f"{kind}-*.pstats"))
        if not files:
            continue
        buf = io.StringIO()
        stats = pstats.Stats(str(files[0]), stream=buf)
        for f in files[1:]:
            stats.add(str(f))
        stats.strip_dirs().sort_stats("cumulative").print_stats(top)
        out[kind] = buf.getvalue()
        print(f"\n===== cProfile (thread CPU time) of the WSGI app, {kind} requests, top {top} =====")
        print(out[kind])
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench_serve.py",
        description=(
            "Benchmark 2030.5 GETs over keep-alive mutually authenticated TLS 1.2 (CCM8) against a "
            "real `derflex serve` process on 127.0.0.1. Compares the real resource "
            "(GET /edev/{own id}, device-scoped, database-backed) with the framework's ceiling "
            "(GET /bench/ping: same gunicorn/TLS/Flask stack, trivial handler, added only by this "
            "script), alternating ceiling/real rounds, then measures the rate of new full TLS "
            "handshakes. Prints a table and writes JSON to bench/results/serve-<timestamp>.json."
        ),
        epilog=(
            "The default run takes about a minute (setup + 2x2 rounds + handshakes, 10 s each). "
            "Client processes share the CPU with the server: on a small machine compare ratios "
            "(real/ceiling, server CPU per request), not absolute rates. With --workers > 1 the "
            "kernel decides which worker gets each keep-alive connection; the 'per worker' column "
            "(percent of one core per worker) shows the split of each round."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--devices", type=int, default=200, help="device certificates issued and registered")
    p.add_argument("--clients", type=int, default=4, help="concurrent client processes (one device and one keep-alive connection each)")
    p.add_argument("--seconds", type=float, default=10.0, help="duration of each measured scenario round")
    p.add_argument("--rounds", type=int, default=2, help="ceiling/real pairs, alternated")
    p.add_argument("--workers", type=int, default=1, help="gunicorn worker processes of the server")
    p.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    p.add_argument(
        "--resource",
        choices=("edev", "derc"),
        default="edev",
        help="the real request: the device's EndDevice, or its DERControlList in a program where "
        "every device has its own scheduled control (use with --devices 10000)",
    )
    p.add_argument(
        "--response-cache",
        type=int,
        default=5,
        help="the server's response_cache_seconds (the product default is 5; 0 measures the uncached path)",
    )
    p.add_argument("--no-handshake", action="store_true", help="skip the new-handshake scenario")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="folder for the JSON results")
    p.add_argument("--keep", action="store_true", help="keep the temporary home (certificates, DB, server log)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="diagnostic: cProfile the WSGI app in each server worker (ceiling and real separately) "
        "and print the top functions; slows the server, so its rates are not comparable",
    )
    p.add_argument("--profile-top", type=int, default=30, help="functions shown per profile")
    p.add_argument("--_serve", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._serve is None:
        if args.devices < 1 or args.clients < 1 or args.rounds < 1 or args.workers < 1 or args.threads < 1:
            p.error("--devices, --clients, --rounds, --workers and --threads must be at least 1")
        if args.clients > args.devices:
            p.error("--clients cannot exceed --devices (each client uses its own device certificate)")
        if not 0.5 <= args.seconds <= 600:
            p.error("--seconds must be between 0.5 and 600")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args._serve is not None:
        _serve_main(args._serve)
        return 0

    machine = _machine()
    bench = Bench(args)
    rows: list[dict[str, Any]] = []
    handshake: dict[str, Any] | None = None
    profiles: dict[str, str] = {}
    t_start = time.perf_counter()
    try:
        creds = bench.prepare()
        bench.start_server()
        bench.wait_ready(creds[0])
        bench.start_clients(creds)
        n = args.clients
        ping_paths = [PING_PATH] * n
        if args.resource == "derc":
            bench.real_label = "/edev/{own id}/derp/{p}/derc?l=10"
            edev_paths = [f"/edev/{creds[i][3]}/derp/{bench.program_id}/derc?l=10" for i in range(n)]
        else:
            bench.real_label = "/edev/{own id}"
            edev_paths = [f"/edev/{creds[i][3]}" for i in range(n)]
        _say(
            f"server pid {bench.server.pid if bench.server else '?'} on {HOST}:{bench.port}: "
            f"{args.workers} worker(s) x {args.threads} threads; {n} clients"
        )
        # Short unrecorded warm-up of both paths (imports, thread pool, caches).
        bench.run_scenario(CEILING, ping_paths, 1.0)
        bench.run_scenario(REAL, edev_paths, 1.0)
        for rnd in range(1, args.rounds + 1):
            for kind, paths in ((CEILING, ping_paths), (REAL, edev_paths)):
                _say(f"round {rnd}: {kind} for {args.seconds:g} s")
                row = bench.run_scenario(kind, paths, args.seconds)
                row["round"] = rnd
                rows.append(row)
        if not args.no_handshake:
            _say(f"new TLS handshakes for {args.seconds:g} s")
            handshake = bench.run_scenario(HANDSHAKE, ping_paths, args.seconds)
            handshake["round"] = 1
    finally:
        bench.stop()
        if bench.profile_dir is not None and bench.profile_dir.exists():
            profiles = _print_profiles(bench.profile_dir, args.profile_top)
        if bench.server is not None and bench.server.returncode not in (0, None):
            _say(f"server exited with {bench.server.returncode}:\n{bench._log_tail()}")
        bench.cleanup()

    ceiling = _combine([r for r in rows if r["scenario"] == CEILING], CEILING)
    real = _combine([r for r in rows if r["scenario"] == REAL], REAL)
    ratio = real["rate"] / ceiling["rate"] if ceiling["rate"] else None
    pair_ratios = [
        b["rate"] / a["rate"] if a["rate"] else None
        for a, b in zip(rows[0::2], rows[1::2], strict=True)
    ]
    cpu_ratio = (
        ceiling["server_cpu_us_per_req"] / real["server_cpu_us_per_req"]
        if ceiling["server_cpu_us_per_req"] and real["server_cpu_us_per_req"]
        else None
    )

    print()
    print(
        f"derflex serve benchmark — {machine['date']} — nproc {machine['nproc']} "
        f"({machine['cpu_model']}), Python {machine['python']}, {machine['openssl']}"
    )
    print(
        f"server: {args.workers} worker(s) x {args.threads} threads, TLS 1.2 ECDHE-ECDSA-AES128-CCM8, "
        f"mTLS; {args.clients} client processes, keep-alive; {args.devices} devices registered; "
        f"response cache {args.response_cache} s"
    )
    print()
    shown = rows + [ceiling, real] + ([handshake] if handshake else [])
    print(_table(shown))
    print()
    print(
        f"real/ceiling (req/s): {_fmt(ratio, '.3f')}   per pair: "
        + ", ".join(_fmt(x, ".3f") for x in pair_ratios)
        + f"   target >= 0.80: {'met' if ratio is not None and ratio >= 0.8 else 'NOT met'}"
    )
    print(
        f"server CPU per request: ceiling {_fmt(ceiling['server_cpu_us_per_req'], '.0f')} µs, "
        f"real {_fmt(real['server_cpu_us_per_req'], '.0f')} µs "
        f"(ceiling/real {_fmt(cpu_ratio, '.3f')})"
    )
    print(
        f"response bodies: ceiling {ceiling['body_bytes']} bytes, real {real['body_bytes']} bytes"
    )
    if handshake:
        print(
            f"new handshakes: {handshake['rate']:.1f}/s (full TLS 1.2 + client cert + 1 GET + close; "
            f"{handshake['resumed_sessions']} resumed)"
        )
    if args.profile:
        print("NOTE: --profile was on; rates above include profiler overhead.")

    for r in shown:
        r.pop("_lat", None)
    result = {
        "benchmark": "serve",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine,
        "config": {
            "devices": args.devices,
            "clients": args.clients,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "response_cache_seconds": args.response_cache,
            "resource": args.resource,
            "workers": args.workers,
            "threads": args.threads,
            "profile": args.profile,
            "tls": "TLS 1.2 ECDHE-ECDSA-AES128-CCM8, client certificate required",
        },
        "setup_seconds": bench.setup_seconds if hasattr(bench, "setup_seconds") else None,
        "total_seconds": time.perf_counter() - t_start,
        "rounds": rows,
        "ceiling": ceiling,
        "real": real,
        "ratio_real_over_ceiling": ratio,
        "pair_ratios": pair_ratios,
        "server_cpu_ratio_ceiling_over_real": cpu_ratio,
        "handshake": handshake,
        "loadavg_end": list(os.getloadavg()),
        "profiles": profiles or None,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out / f"serve-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

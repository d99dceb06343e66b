#!/usr/bin/env python
"""Soak run: thousands of simulated 2030.5 devices polling a real `derflex serve` for minutes.

What one run does (everything on 127.0.0.1, every wait bounded):

  1. A fresh home (temporary folder) prepared like a first `derflex serve` (database, dev PKI,
     admin token); with --db postgresql a scratch database on the local PostgreSQL, dropped after.
  2. `derflex serve` started as a real process in a session of its own (2030.5 over TLS 1.2,
     ECDHE-ECDSA-AES128-CCM8 only, client certificates; the Beckn BPP forked beside it; the flex
     scheduler on), with DERFLEX_POLL_RATE set to the compressed pollRate: every pollRate the
     server announces (DeviceCapability, lists, /tm) is that value, and the devices follow it.
  3. --devices certificates issued in bulk from the dev PKI (progress line), then a der_sim Fleet
     of mixed kinds (batteries, loads, EV chargers, PV; der_sim.fleet.DEFAULT_MIX) in this process,
     started in --waves waves spread over one pollRate (so the devices' cycles are spread over it
     as a real fleet's are), --fleet-threads threads each: each device registers in band, PUTs its
     four DER documents and, after its first metering interval, creates its MirrorUsagePoint; the
     run waits until all are up (progress).
  4. Operator traffic like a publish (on by default, --event-every 0 switches it off): one DER
     program with every device a member, and every --event-every seconds one event per device
     (its own opModFixedW, responseRequired, randomizeStart --event-randomize), starting a
     pollRate + 30 s later, --event-duration long: every device's DERControlList changes (uncached
     polls), and devices POST Responses (received, started, completed).
  5. The soak: --minutes of steady polling (pollRate), DERStatus/DERAvailability and meter
     readings every --post-rate; every --sample-seconds the server's processes are read from /proc
     (the `serve` process = gunicorn master, its 2030.5 worker(s), the Beckn BPP and its child(ren);
     with PostgreSQL also the backends of the scratch database): CPU % of one core and of the
     machine, RSS and PSS, the workers' main thread (gunicorn's accept/keep-alive loop) apart; the
     server's TCP connections by state (/proc/net/tcp); the load generator's own CPU (this
     process); the whole machine's busy share (/proc/stat: other work on a shared machine shows).
  6. At the end: requests (registration phase and soak phase apart), failed requests (status >= 400
     or no answer; must be 0 — when not, the statuses, the devices' last errors and the server log's
     errors are reported), exact latency percentiles per method and per resource, requests/s,
     achieved polls and posts against the pollRate/postRate asked, server CPU mean/max, RSS
     start/end/max and its slope, the fleet's counters (with TLS connections opened and answers
     that closed the keep-alive) against the rows in the database, change-counter bumps per cache
     family; JSON to bench/results/soak-<UTC timestamp>.json (and the server and client logs beside
     it if anything failed).

--diagnose starts the same server (server.serve.run) through this script with the 2030.5 app
wrapped to measure thread CPU per request by method and resource (the Flask part, not gunicorn's
TLS and parsing): where the server's CPU goes. Its figures are a diagnosis, not the product's.

The machine matters: the load generator runs on the same cores as the server (on a 2-core
machine it competes with it), so its CPU is reported next to the server's.

Examples:
    .venv/bin/python bench/bench_soak.py --smoke             # ~2 minutes, 100 devices
    .venv/bin/python bench/bench_soak.py                     # 2,000 devices, 10 minutes, SQLite, 300 s
    .venv/bin/python bench/bench_soak.py --db postgresql --workers 2
"""

from __future__ import annotations

import argparse
import array
import datetime as dt
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for p in (str(REPO), str(REPO / "bench")):
    if p not in sys.path:
        sys.path.insert(0, p)

from benchlib import PgDatabase, machine_info  # noqa: E402

HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NPROC = len(os.sched_getaffinity(0))
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 25.0
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
LOG_PROBLEMS = re.compile(r"Traceback|\[ERROR\]|\[CRITICAL\]|WORKER TIMEOUT|Worker .*(?:was sent|exited)|"
                          r"Exception|Error:|database is locked|OperationalError", re.I)


def _say(msg: str) -> None:
    print(f"soak: {msg}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------ --diagnose
# The server of a --diagnose run: exactly `derflex serve` (server.serve.run: the BPP forked beside
# it, the scheduler in the worker) with one addition, made only here: the 2030.5 app of every
# worker measures the thread CPU time of each request by method and resource (the Flask part: not
# gunicorn's TLS and HTTP parsing) and writes the totals to <home>/diag-<pid>.json every 2 s.


def _diag_serve(config_json: str) -> None:
    cfg = json.loads(config_json)
    from server import serve
    from server.config import from_env

    settings = from_env(os.environ, home=Path(cfg["home"]), bind=cfg["bind"], workers=cfg["workers"],
                        threads=cfg["threads"])
    original = serve.DerflexServer.load

    def load(self: Any) -> Any:
        app = original(self)
        app.wsgi_app = _accounted(app.wsgi_app, Path(cfg["home"]))
        return app

    serve.DerflexServer.load = load  # type: ignore[method-assign]
    serve.run(settings)


def _accounted(wsgi_app: Any, home: Path) -> Any:
    totals: dict[str, list[float]] = {}  # resource -> [count, thread CPU s, wall s]
    lock = threading.Lock()
    started: list[bool] = []

    def dump() -> None:
        out = home / f"diag-{os.getpid()}.json"
        while True:
            time.sleep(2.0)
            with lock:
                snap = {k: list(v) for k, v in totals.items()}
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(snap))
            tmp.replace(out)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if not started:  # first request of this worker process (after the fork): start the dumper
            started.append(True)
            threading.Thread(target=dump, name="soak-diag", daemon=True).start()
        key = resource_of(environ.get("REQUEST_METHOD", "?"), environ.get("PATH_INFO", "?"))
        c0, w0 = time.thread_time(), time.perf_counter()
        try:
            body = wsgi_app(environ, start_response)
            return [b"".join(body)]  # rendered here, so that the accounting includes it
        finally:
            c, w = time.thread_time() - c0, time.perf_counter() - w0
            with lock:
                t = totals.setdefault(key, [0, 0.0, 0.0])
                t[0] += 1
                t[1] += c
                t[2] += w

    return app


# ------------------------------------------------------------------------------ request stats

_SEGMENT_ID = re.compile(r"/\d+(?=/|$)")
_local = threading.local()


def resource_of(method: str, path: str) -> str:
    """'GET /edev/{}/derp/{}/derc' for 'GET /edev/12/derp/1/derc?s=0&l=100'."""
    return f"{method} {_SEGMENT_ID.sub('/{}', path.split('?', 1)[0])}"


def _pct(values: array.array, q: float) -> float | None:
    """Nearest-rank percentile of unsorted values (sorted copy)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))
    return s[k]


def _lat_summary(values: array.array) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    s = sorted(values)
    n = len(s)

    def q(p: float) -> float:
        return round(s[max(0, min(n - 1, int(-(-p * n // 100)) - 1))] * 1000, 2)

    return {"n": n, "p50_ms": q(50), "p90_ms": q(90), "p99_ms": q(99), "max_ms": round(s[-1] * 1000, 2),
            "mean_ms": round(sum(s) / n * 1000, 2)}


class TracingTransport:
    """Wraps a device's transport to note the path of the request in flight (for the stats)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.server_closed = 0  # answers with "Connection: close" (the server ends the keep-alive)

    def request(self, method: str, path: str, body: bytes | None, headers: Any) -> Any:
        _local.path = path
        answer = self.inner.request(method, path, body, headers)
        if answer[1].get("connection", "").lower() == "close":
            self.server_closed += 1
        return answer

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def make_soak_stats() -> Any:
    """A der_sim Stats that also keeps, per phase, exact latencies by method and by resource,
    failures by status and resource, and a window that the sampler swaps every sample."""
    from der_sim.client import Stats

    class SoakStats(Stats):
        def __init__(self) -> None:
            super().__init__()
            self.phase = "register"
            self._plock = threading.Lock()
            self.lat: dict[str, dict[str, array.array]] = {}  # phase -> key -> seconds
            self.statuses: dict[str, Counter[tuple[str, int]]] = {}  # phase -> (resource, status) -> n
            self.window = array.array("d")
            self.window_failed = 0

        def record(self, method: str, status: int, seconds: float) -> None:
            super().record(method, status, seconds)
            res = resource_of(method, getattr(_local, "path", "?"))
            with self._plock:
                lat = self.lat.setdefault(self.phase, {})
                for key in (method, res, "all"):
                    lat.setdefault(key, array.array("d")).append(seconds)
                self.statuses.setdefault(self.phase, Counter())[(res, status)] += 1
                self.window.append(seconds)
                if status == 0 or status >= 400:
                    self.window_failed += 1

        def set_phase(self, phase: str) -> None:
            with self._plock:
                self.phase = phase

        def take_window(self) -> tuple[array.array, int]:
            with self._plock:
                w, f = self.window, self.window_failed
                self.window, self.window_failed = array.array("d"), 0
            return w, f

    return SoakStats()


# ------------------------------------------------------------------------------ /proc sampling


def _stat(pid: int) -> tuple[int, int, float] | None:
    """(ppid, session, user+system CPU seconds) or None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[3]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def _stat_task(pid: int, tid: int) -> float | None:
    """User+system CPU seconds of one thread of a process."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _kib(pid: int, path: str, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/{path}") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


_TCP_STATES = {"01": "established", "06": "time_wait", "08": "close_wait", "04": "fin_wait1", "05": "fin_wait2",
               "09": "last_ack", "0A": "listen"}


def tcp_states(port: int) -> dict[str, dict[str, int]]:
    """Sockets of 127.0.0.1:port by state, from /proc/net/tcp: the server's side (local port) and
    the clients' side (remote port)."""
    server: Counter[str] = Counter()
    client: Counter[str] = Counter()
    want = f"{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                local, remote, st = parts[1], parts[2], parts[3]
                state = _TCP_STATES.get(st, st)
                if local.endswith(":" + want):
                    server[state] += 1
                elif remote.endswith(":" + want):
                    client[state] += 1
    except OSError:
        pass
    return {"server": dict(server), "client": dict(client)}


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    total = sum(parts[:8])
    return float(total - idle), float(total)


class ProcessSampler:
    """Reads the server's process tree (its session) every few seconds: CPU and memory per role."""

    def __init__(self, server_pid: int, pg_dbname: str | None, port: int = 0) -> None:
        self.root = server_pid
        self.port = port
        self.pg_dbname = pg_dbname
        self.samples: list[dict[str, Any]] = []
        self.seen: dict[int, str] = {}  # pid -> role, every process ever seen
        self._last: dict[int, float] = {}
        self._last_threads: dict[tuple[int, str], float] = {}
        self._threads_now: dict[tuple[int, str], float] = {}
        self._last_t = 0.0
        self._last_self = 0.0
        self._last_machine = (0.0, 0.0)

    def tree(self) -> dict[int, str]:
        """pid -> role for every live process of the server's session."""
        procs: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            st = _stat(int(entry))
            if st is not None and st[1] == self.root:
                procs[int(entry)] = st[0]
        roles: dict[int, str] = {}
        kids: dict[int, list[int]] = {}
        for pid, ppid in procs.items():
            kids.setdefault(ppid, []).append(pid)
        if self.root in procs:
            roles[self.root] = "serve (gunicorn master)"
        for child in kids.get(self.root, []):
            grand = kids.get(child, [])
            if grand:  # the BPP: forked by `serve`, a gunicorn master of its own (plus, on
                roles[child] = "beckn BPP master"  # PostgreSQL, the Beckn worker process)
                for g in grand:
                    roles[g] = "beckn BPP child"
            else:
                roles[child] = "2030.5 worker"
        for pid in procs:
            roles.setdefault(pid, "other")
        return roles

    def postgres_backends(self) -> list[int]:
        if not self.pg_dbname:
            return []
        out = []
        needle = f" {self.pg_dbname} ".encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if cmd.startswith(b"postgres:") and needle in cmd:
                out.append(int(entry))
        return out

    def sample(self, label: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        now = time.monotonic()
        roles = self.tree()
        for pid in self.postgres_backends():
            roles[pid] = "postgres backends"
        self.seen.update(roles)
        cpu: dict[int, float] = {}
        for pid in roles:
            st = _stat(pid)
            if st is not None:
                cpu[pid] = st[2]
        own = os.times()
        self_cpu = own.user + own.system
        machine = _machine_busy()
        out: dict[str, Any] = {"t": round(time.time(), 1), "phase": label, "roles": {}}
        dt_s = now - self._last_t if self._last_t else 0.0
        by_role: dict[str, dict[str, Any]] = {}
        self._threads_now: dict[tuple[int, str], float] = {}
        for pid, role in roles.items():
            r = by_role.setdefault(role, {"pids": [], "cpu_s": 0.0, "rss_kib": 0, "pss_kib": 0})
            r["pids"].append(pid)
            if pid in cpu and pid in self._last and dt_s > 0:
                r["cpu_s"] += cpu[pid] - self._last[pid]
            elif pid in cpu and dt_s > 0:  # new since the last sample: counts from its start
                r["cpu_s"] += cpu[pid]
            r["rss_kib"] += _kib(pid, "status", "VmRSS:") or 0
            r["pss_kib"] += _kib(pid, "smaps_rollup", "Pss:") or 0
            if role == "2030.5 worker":
                r.setdefault("rss_each_kib", []).append(_kib(pid, "status", "VmRSS:") or 0)
                # the main thread (gunicorn's accept/keep-alive loop) apart from the others
                # (request threads, the scheduler): tid == pid is the main thread
                main = _stat_task(pid, pid)
                if main is not None:
                    key = (pid, "main")
                    if key in self._last_threads and dt_s > 0:
                        r["main_thread_cpu_s"] = r.get("main_thread_cpu_s", 0.0) + main - self._last_threads[key]
                    self._threads_now[key] = main
        server_cpu = 0.0
        server_rss = server_pss = 0
        for role, r in by_role.items():
            pct = 100 * r["cpu_s"] / dt_s if dt_s else None
            out["roles"][role] = {"pids": sorted(r["pids"]), "cpu_pct_core": None if pct is None else round(pct, 1),
                                  "rss_mib": round(r["rss_kib"] / 1024, 1), "pss_mib": round(r["pss_kib"] / 1024, 1)}
            if "rss_each_kib" in r:
                out["roles"][role]["rss_each_mib"] = [round(x / 1024, 1) for x in r["rss_each_kib"]]
            if "main_thread_cpu_s" in r and dt_s:
                out["roles"][role]["main_thread_cpu_pct_core"] = round(100 * r["main_thread_cpu_s"] / dt_s, 1)
            if role != "postgres backends":
                server_cpu += r["cpu_s"]
                server_rss += r["rss_kib"]
                server_pss += r["pss_kib"]
        if dt_s:
            out["server_cpu_pct_core"] = round(100 * server_cpu / dt_s, 1)
            out["server_cpu_pct_machine"] = round(100 * server_cpu / dt_s / NPROC, 1)
            out["client_cpu_pct_core"] = round(100 * (self_cpu - self._last_self) / dt_s, 1)
            busy = machine[0] - self._last_machine[0]
            total = machine[1] - self._last_machine[1]
            out["machine_busy_pct"] = round(100 * busy / total, 1) if total else None
            out["seconds"] = round(dt_s, 2)
        out["server_rss_mib"] = round(server_rss / 1024, 1)
        out["server_pss_mib"] = round(server_pss / 1024, 1)
        out["client_rss_mib"] = round((_kib(os.getpid(), "status", "VmRSS:") or 0) / 1024, 1)
        out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
        if self.port:
            out["tcp"] = tcp_states(self.port)
        if extra:
            out.update(extra)
        self._last = cpu
        self._last_threads = self._threads_now
        self._last_t = now
        self._last_self = self_cpu
        self._last_machine = machine
        if dt_s:
            self.samples.append(out)
        return out


# ------------------------------------------------------------------------------ the run


class FleetGroup:
    """Several der_sim Fleets (the waves) seen as one: agents, phases, registration, stop."""

    def __init__(self, fleets: list[Any]) -> None:
        self.fleets = fleets

    @property
    def agents(self) -> list[Any]:
        return [a for f in self.fleets for a in f.agents]

    def phases(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for f in self.fleets:
            out.update(f.phases())
        return dict(out)

    def running(self) -> int:
        return sum(1 for a in self.agents if a.phase == "running" and a.counters.reports > 0)

    def wait_registered(self, timeout: float, progress: Any = None) -> int:
        deadline = time.monotonic() + timeout
        total = len(self.agents)
        while True:
            up = self.running()
            if progress is not None:
                progress("devices registered", up, total)
            if up >= total or time.monotonic() >= deadline:
                return up
            time.sleep(0.25)

    def stop(self) -> None:
        for f in self.fleets:
            f.stop()


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.home = Path(tempfile.mkdtemp(prefix="derflex-soak-"))
        self.pg = PgDatabase(args.postgres_url, "derflex_soak") if args.db == "postgresql" else None
        self.server: subprocess.Popen[bytes] | None = None
        self.fleet: Any = None
        self.db: Any = None
        self.sampler: ProcessSampler | None = None
        self.log = self.home / "server.log"
        self.stats: Any = None
        self.events: list[dict[str, Any]] = []
        self.program_id: int | None = None
        self.timings: dict[str, float] = {}
        self._sample_lock = threading.Lock()
        self._sampler_thread: threading.Thread | None = None
        self.result: dict[str, Any] = {
            "benchmark": "soak",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": machine_info(("gunicorn", "Flask", "SQLAlchemy", "psycopg", "cryptography")),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        }
        self.result["machine"]["openssl"] = __import__("ssl").OPENSSL_VERSION

    # ---------------------------------------------------------------------------- set-up
    def prepare(self) -> None:
        from server.bootstrap import prepare
        from server.config import from_env

        a = self.args
        if self.pg is not None:
            self.pg.create()
            self.result["machine"]["postgresql"] = self.pg.version()
        self.port, self.beckn_port = _free_port(), _free_port()
        self.env = {
            "DERFLEX_POLL_RATE": str(a.poll_rate),
            "DERFLEX_BECKN_BIND": f"{HOST}:{self.beckn_port}",
            "DERFLEX_UI_BIND": "off",  # no dashboard: its CPU and port stay out of the figures
            "DERFLEX_SCHEDULER": "true" if a.scheduler else "false",
        }
        if self.pg is not None:
            self.env["DERFLEX_DATABASE_URL"] = self.pg.url
        self.settings = from_env(self.env, home=self.home, bind=f"{HOST}:{self.port}", workers=a.workers,
                                 threads=a.threads)
        self.db = prepare(self.settings, say=lambda _m: None)
        where = "SQLite (WAL) in the temporary home" if self.pg is None else f"PostgreSQL database {self.pg.name}"
        self.result["database"] = where
        _say(f"home {self.home}; {where}")

    def start_server(self) -> None:
        a = self.args
        cmd = [sys.executable, "-m", "server.cli", "--home", str(self.home), "serve", "--bind",
               f"{HOST}:{self.port}", "--workers", str(a.workers), "--threads", str(a.threads)]
        if a.diagnose:  # the same server.serve.run, its app wrapped to account CPU per resource
            cmd = [sys.executable, str(Path(__file__).resolve()), "--_serve", json.dumps(
                {"home": str(self.home), "bind": f"{HOST}:{self.port}", "workers": a.workers, "threads": a.threads})]
        env = {**os.environ, **self.env, "PYTHONPATH": str(REPO)}
        with self.log.open("wb") as out:
            self.server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.home,
                                           start_new_session=True)  # its own session: found and stopped whole
        deadline = time.monotonic() + START_TIMEOUT_S
        for port in (self.port, self.beckn_port):
            while True:
                if self.server.poll() is not None:
                    raise RuntimeError(f"the server exited with {self.server.returncode}:\n{self.log_tail()}")
                try:
                    socket.create_connection((HOST, port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the server did not listen on {port} within "
                                           f"{START_TIMEOUT_S:.0f} s:\n{self.log_tail()}") from None
                    time.sleep(0.2)
        self.result["cli"] = " ".join(["derflex", *cmd[3:]]) if not a.diagnose else "bench_soak.py --_serve (diagnose)"
        self.sampler = ProcessSampler(self.server.pid, self.pg.name if self.pg else None, self.port)
        # wait until the expected processes exist (workers fork after the master listens)
        want = a.workers
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            roles = Counter(self.sampler.tree().values())
            if roles["2030.5 worker"] >= want and roles["beckn BPP master"] >= 1:
                break
            time.sleep(0.2)
        roles = self.sampler.tree()
        _say(f"server pid {self.server.pid} on https://{HOST}:{self.port} (pollRate {a.poll_rate} s, "
             f"{a.workers} worker(s) x {a.threads} threads), BPP on {HOST}:{self.beckn_port}; processes: "
             + ", ".join(f"{pid} {role}" for pid, role in sorted(roles.items())))
        self.start_sampling()
        self.sample("start")

    def start_fleet(self) -> None:
        from der_sim.agent import AgentConfig
        from der_sim.fleet import Fleet, certificates, make_devices, progress_printer
        from server.bootstrap import tls_files
        from server.pki import DevPKI

        a = self.args
        progress = progress_printer()
        devices = make_devices(a.devices, seed=a.seed, prefix="soak")
        self.result["kinds"] = dict(sorted(Counter(d.kind for d in devices).items()))
        t0 = time.perf_counter()
        creds = certificates(DevPKI(self.settings.certs_dir), devices, progress)
        self.timings["certificates_s"] = round(time.perf_counter() - t0, 1)
        _say(f"{len(creds)} device certificates issued in {self.timings['certificates_s']} s "
             f"({', '.join(f'{v} {k}' for k, v in self.result['kinds'].items())})")
        # poll_rate left to the server (DERFLEX_POLL_RATE); post rate given (in-band devices have none)
        config = AgentConfig(pin=None, post_rate=float(a.post_rate), interval_s=a.interval)
        self.result["agent_config"] = {"poll_rate": "server's pollRate", "post_rate": a.post_rate,
                                       "interval_s": a.interval, "timeout_s": a.client_timeout}
        # Waves: the fleet starts in --waves groups (one der_sim Fleet each, --fleet-threads threads
        # each) spread over one pollRate, so the devices' cycles are spread over the pollRate as a
        # real fleet's are, instead of all arriving in one burst.
        n = len(devices)
        waves = max(1, min(a.waves, n))
        bounds = [n * i // waves for i in range(waves + 1)]
        fleets = [Fleet(devices[lo:hi], creds[lo:hi], HOST, self.port, tls_files(self.settings).trust,
                        config=config, workers=a.fleet_threads, seed=a.seed, timeout=a.client_timeout)
                  for lo, hi in zip(bounds, bounds[1:]) if hi > lo]
        self.fleet = FleetGroup(fleets)
        self.stats = make_soak_stats()
        for f in fleets:
            f.stats = self.stats
        for agent in self.fleet.agents:
            agent.client.stats = self.stats
            agent.client.transport = TracingTransport(agent.client.transport)
        spacing = a.poll_rate / len(fleets)
        _say(f"starting {n} devices in {len(fleets)} waves of ~{n // len(fleets)}, {spacing:.1f} s apart "
             f"({a.fleet_threads} threads each)")
        t0 = time.perf_counter()
        progress_label = "devices registered"
        for i, f in enumerate(fleets):
            if i:
                deadline = t0 + i * spacing
                while (left := deadline - time.perf_counter()) > 0:
                    progress(progress_label, self.fleet.running(), n)
                    time.sleep(min(1.0, left))
            f.start()
        up = self.fleet.wait_registered(a.register_timeout, progress)
        self.timings["registration_s"] = round(time.perf_counter() - t0, 1)
        self.result["registered"] = up
        self.result["waves"] = {"count": len(fleets), "spacing_s": round(spacing, 1)}
        if up < a.devices:
            _say(f"only {up} of {a.devices} devices registered within {a.register_timeout} s "
                 f"(phases {self.fleet.phases()}); soaking anyway, see failures at the end")
        else:
            _say(f"all {up} devices registered and reported in {self.timings['registration_s']} s "
                 f"({self.stats.requests:,} requests, {self.stats.failed} failed)")

    def make_program(self) -> None:
        from sqlalchemy import select

        from server.db.models import Device
        from server.services.sep2 import derp

        now = int(time.time())
        with self.db.transaction() as s:
            ids = list(s.scalars(select(Device.id).order_by(Device.id)))
            self.program_id = derp.create_der_program(s, description="soak", primacy=1, now=now).id
            derp.add_members(s, self.program_id, ids)
            derp.set_default_control(s, self.program_id, {"opModConnect": True})
        self.device_ids = ids
        _say(f"DER program {self.program_id}: {len(ids)} members, a DefaultDERControl; one event per device "
             f"every {self.args.event_every} s")

    def publish(self) -> None:
        """One event per member (its own opModFixedW), starting one pollRate + 30 s from now (every
        device sees it before it starts), --event-duration long."""
        from server.services.sep2 import derp

        lead, duration = self.args.poll_rate + 30, self.args.event_duration
        now = int(time.time())
        t0 = time.perf_counter()
        with self.db.transaction() as s:
            controls = [(d, derp.control_base({"opModFixedW": 500 + (d * 37 + now) % 2500})) for d in self.device_ids]
            derp.create_events(s, self.program_id, start=now + lead, duration=duration, controls=controls, now=now,
                               description="soak", randomize_start=self.args.event_randomize or None)
        took = time.perf_counter() - t0
        self.events.append({"at": now, "start": now + lead, "duration": duration, "events": len(controls),
                            "randomize_start": self.args.event_randomize,
                            "write_s": round(took, 2)})
        _say(f"published {len(controls)} events (start in {lead} s, {duration} s long) in {took:.2f} s")

    # ---------------------------------------------------------------------------- sampling
    def sample(self, label: str | None = None) -> dict[str, Any]:
        """One sample of the processes, with the requests since the last one (thread-safe)."""
        assert self.sampler is not None
        with self._sample_lock:
            extra: dict[str, Any] = {}
            phase = label or (self.stats.phase if self.stats is not None else "start")
            if self.stats is not None:
                window, failed = self.stats.take_window()
                span = time.monotonic() - self.sampler._last_t if self.sampler._last_t else 0
                extra = {"requests": len(window), "failed": failed,
                         "req_per_s": round(len(window) / span, 1) if span else None,
                         "p50_ms": round((_pct(window, 50) or 0) * 1000, 2),
                         "p99_ms": round((_pct(window, 99) or 0) * 1000, 2)}
                if self.fleet is not None:
                    extra["device_phases"] = self.fleet.phases()
            return self.sampler.sample(phase, extra)

    def _sampling(self) -> None:
        while not self._stop_sampling.wait(self.args.sample_seconds):
            try:
                self.sample()
            except Exception as exc:  # never let the sampler take the run down
                _say(f"sampler: {type(exc).__name__}: {exc}")

    def start_sampling(self) -> None:
        self._sample_lock = threading.Lock()
        self._stop_sampling = threading.Event()
        self._sampler_thread = threading.Thread(target=self._sampling, name="soak-sampler", daemon=True)
        self._sampler_thread.start()

    def stop_sampling(self) -> None:
        if getattr(self, "_sampler_thread", None) is not None:
            self._stop_sampling.set()
            self._sampler_thread.join(10)
            self._sampler_thread = None

    # ---------------------------------------------------------------------------- the soak
    def soak(self) -> None:
        a = self.args
        assert self.sampler is not None and self.fleet is not None
        if a.event_every:
            self.make_program()
        self.sample()  # closes the registration phase's last sample
        self.stats.set_phase("soak")
        before = self._counters()
        counters0 = self.change_counters()
        diag0 = self.diagnosis() if self.args.diagnose else {}
        t_start = time.monotonic()
        end = t_start + a.minutes * 60
        next_event = t_start + min(15.0, a.event_every) if a.event_every else float("inf")
        next_line = t_start + a.progress_seconds
        cpu0 = os.times()
        _say(f"soaking for {a.minutes:g} min ({a.devices} devices, pollRate {a.poll_rate} s, postRate "
             f"{a.post_rate} s)")
        while True:
            now = time.monotonic()
            if now >= end:
                break
            if now >= next_event:
                # only events that start, end and are answered before the soak ends
                if a.poll_rate + 30 + a.event_randomize + a.event_duration + 10 < end - now:
                    self.publish()
                next_event += a.event_every
            if now >= next_line and self.sampler.samples:
                recent = [x for x in self.sampler.samples if x["t"] > time.time() - a.progress_seconds]
                next_line += a.progress_seconds
                if recent:
                    secs = sum(x.get("seconds", 0) for x in recent) or 1.0
                    reqs = sum(x.get("requests", 0) for x in recent)

                    def avg(key: str, role: str | None = None) -> float:
                        vals = [(x["roles"].get(role, {}) if role else x).get(key) for x in recent]
                        vals = [v for v in vals if v is not None]
                        return round(sum(vals) / len(vals), 1) if vals else 0.0

                    last = recent[-1]
                    _say(f"{(now - t_start) / 60:5.1f} min: {reqs / secs:6.1f} req/s, "
                         f"{sum(x.get('failed', 0) for x in recent)} failed, p99 of 5 s windows up to "
                         f"{max(x.get('p99_ms', 0) for x in recent)} ms | server CPU {avg('server_cpu_pct_core')} % "
                         f"of a core, RSS {last['server_rss_mib']} MiB (workers "
                         f"{last['roles'].get('2030.5 worker', {}).get('rss_each_mib')}), "
                         f"{last.get('tcp', {}).get('server', {}).get('established')} connections | load generator "
                         f"{avg('client_cpu_pct_core')} % | machine busy {avg('machine_busy_pct')} % (last "
                         f"{a.progress_seconds:g} s)")
            time.sleep(max(0.05, min(next_line, next_event, end) - time.monotonic()))
        self.timings["soak_s"] = round(time.monotonic() - t_start, 1)
        self.sample()  # closes the soak's last sample
        self.stats.set_phase("stop")
        cpu1 = os.times()
        self.result["client_cpu_soak_s"] = round(cpu1.user + cpu1.system - cpu0.user - cpu0.system, 1)
        after = self._counters()
        self.result["counters_soak"] = {k: after[k] - before.get(k, 0) for k in after}
        self.result["counters_total"] = after
        counters1 = self.change_counters()
        # how often each family of cached documents was invalidated during the soak
        self.result["change_counter_bumps_soak"] = {k: v - counters0.get(k, 0) for k, v in counters1.items()}
        if self.args.diagnose:
            diag1 = self.diagnosis()
            rows = {}
            for k, v in diag1.items():
                b = diag0.get(k, [0, 0.0, 0.0])
                n, cpu, wall = v[0] - b[0], v[1] - b[1], v[2] - b[2]
                if n:
                    rows[k] = {"n": int(n), "cpu_ms_per_req": round(1000 * cpu / n, 3), "cpu_s": round(cpu, 2),
                               "wall_ms_per_req": round(1000 * wall / n, 3)}
            self.result["diagnosis_soak"] = dict(sorted(rows.items(), key=lambda kv: -kv[1]["cpu_s"]))

    def _counters(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for agent in self.fleet.agents:
            c = agent.counters
            for k in ("cycles", "polls", "registrations", "reports", "readings_posted", "readings_dropped",
                      "responses_posted", "responses_dropped", "refusals", "failures"):
                totals[k] += getattr(c, k)
            inner = agent.client.transport
            totals["tls_connections"] += getattr(inner, "connections", 0)
            totals["resent_after_idle_close"] += getattr(inner, "resent", 0)
            totals["answers_with_connection_close"] += getattr(inner, "server_closed", 0)
        return dict(totals)

    def diagnosis(self) -> dict[str, Any]:
        """Per resource: requests, thread CPU ms per request and in all (the Flask part), summed
        over the workers; the soak's share is the difference from the snapshot at its start."""
        time.sleep(2.5)  # one more dump
        totals: dict[str, list[float]] = {}
        for f in self.home.glob("diag-*.json"):
            for k, v in json.loads(f.read_text()).items():
                t = totals.setdefault(k, [0, 0.0, 0.0])
                for i in range(3):
                    t[i] += v[i]
        return totals

    def change_counters(self) -> dict[str, int]:
        from server.db import changes

        return changes.read(self.db.engine)

    # ---------------------------------------------------------------------------- the end
    def database_counts(self) -> dict[str, int]:
        from sqlalchemy import text

        out = {}
        with self.db.read() as conn:
            for table in ("devices", "usage_points", "meter_readings", "readings", "der_statuses",
                          "der_availabilities", "der_events", "der_responses"):
                out[table] = int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
        return out

    def stop_fleet(self) -> None:
        if self.fleet is not None:
            t0 = time.perf_counter()
            self.fleet.stop()
            self.timings["fleet_stop_s"] = round(time.perf_counter() - t0, 1)

    def stop_server(self) -> None:
        if self.server is None:
            return
        if self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.result["server_exit"] = self.server.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _say(f"server did not stop in {STOP_TIMEOUT_S:.0f} s: SIGKILL to its session")
                self.result["server_exit"] = "killed"
        else:
            self.result["server_exit"] = f"exited early with {self.server.returncode}"
        deadline = time.monotonic() + 5  # the BPP follows its parent out within 0.5 s
        while time.monotonic() < deadline and self._session_alive():
            time.sleep(0.2)
        try:
            os.killpg(self.server.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.server.poll() is None:
            self.server.wait(10)

    def _session_alive(self) -> bool:
        assert self.server is not None
        for e in os.listdir("/proc"):
            if e.isdigit():
                st = _stat(int(e))
                if st is not None and st[1] == self.server.pid:
                    return True
        return False

    def log_tail(self, n: int = 30) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def log_problems(self) -> dict[str, Any]:
        if not self.log.exists():
            return {"lines": 0}
        lines = self.log.read_text(errors="replace").splitlines()
        bad = [ln for ln in lines if LOG_PROBLEMS.search(ln)]
        return {"lines": len(lines), "problem_lines": len(bad), "first_problems": bad[:40]}

    def cleanup(self) -> None:
        if self.db is not None:
            self.db.dispose()
            self.db = None
        if self.pg is not None:
            try:
                self.pg.drop()
            except Exception as exc:
                _say(f"could not drop {self.pg.name}: {exc}")
        if self.args.keep:
            _say(f"kept {self.home}")
        else:
            shutil.rmtree(self.home, ignore_errors=True)


# ------------------------------------------------------------------------------ summary


def _slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope (value per minute) of (t seconds, value) points."""
    if len(points) < 3:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return None if den == 0 else 60 * sum((t - mt) * (v - mv) for t, v in points) / den


def summarise(soak: Soak) -> dict[str, Any]:
    a = soak.args
    st = soak.stats
    res = soak.result
    samples = [s for s in soak.sampler.samples if s["phase"] == "soak"] if soak.sampler else []
    seconds = soak.timings.get("soak_s") or 0.0
    lat = st.lat.get("soak", {})
    requests = len(lat.get("all", ()))
    failed_by = {f"{r} -> {code}": n for (r, code), n in sorted(st.statuses.get("soak", Counter()).items())
                 if code == 0 or code >= 400}
    reg_lat = st.lat.get("register", {})
    reg_failed = {f"{r} -> {code}": n for (r, code), n in sorted(st.statuses.get("register", Counter()).items())
                  if code == 0 or code >= 400}
    methods = {m: _lat_summary(v) for m, v in sorted(lat.items()) if " " not in m}
    resources = {r: _lat_summary(v) for r, v in sorted(lat.items(), key=lambda kv: -len(kv[1])) if " " in r}

    def series(key: str, role: str | None = None) -> list[float]:
        out = []
        for s in samples:
            v = s["roles"].get(role, {}).get(key) if role else s.get(key)
            if v is not None:
                out.append(v)
        return out

    def mm(values: list[float]) -> dict[str, Any]:
        if not values:
            return {}
        return {"mean": round(sum(values) / len(values), 1), "max": round(max(values), 1),
                "min": round(min(values), 1)}

    roles = sorted({r for s in samples for r in s["roles"]})
    cpu = {"server_pct_core": mm(series("server_cpu_pct_core")),
           "server_pct_machine": mm(series("server_cpu_pct_machine")),
           "load_generator_pct_core": mm(series("client_cpu_pct_core")),
           "machine_busy_pct": mm(series("machine_busy_pct")),
           "by_role_pct_core": {r: mm(series("cpu_pct_core", r)) for r in roles},
           "workers_main_thread_pct_core": mm(series("main_thread_cpu_pct_core", "2030.5 worker"))}
    mem: dict[str, Any] = {}
    for r in roles:
        rss = series("rss_mib", r)
        if rss:
            mem[r] = {"rss_start_mib": rss[0], "rss_end_mib": rss[-1], "rss_max_mib": max(rss),
                      "pss_end_mib": series("pss_mib", r)[-1] if series("pss_mib", r) else None}
    total_rss = series("server_rss_mib")
    if total_rss:
        mem["server_total"] = {"rss_start_mib": total_rss[0], "rss_end_mib": total_rss[-1],
                               "rss_max_mib": max(total_rss), "pss_end_mib": series("server_pss_mib")[-1]}
    # leak check: slope of the 2030.5 workers' RSS over the second half of the soak
    t0 = samples[0]["t"] if samples else 0
    worker_points = [(s["t"] - t0, s["roles"].get("2030.5 worker", {}).get("rss_mib", 0)) for s in samples]
    half = worker_points[len(worker_points) // 2:]
    mem["workers_rss_slope_mib_per_min"] = {
        "whole_soak": None if (v := _slope_per_min(worker_points)) is None else round(v, 3),
        "second_half": None if (v := _slope_per_min(half)) is None else round(v, 3)}
    established = [s_["tcp"]["server"].get("established", 0) for s_ in samples if "tcp" in s_]
    worker_pids = sorted(p for p, r in (soak.sampler.seen.items() if soak.sampler else []) if r == "2030.5 worker")
    c = res.get("counters_soak", {})
    expected_polls = a.devices * seconds / a.poll_rate if seconds else 0
    expected_readings = a.devices * seconds / a.interval if seconds else 0
    agents = soak.fleet.agents if soak.fleet else []
    errors = Counter(re.sub(r"/\d+", "/{}", ag.last_error) for ag in agents if ag.last_error)
    polls_seen = Counter(round(ag.poll_rate) for ag in agents)
    summary = {
        "devices": a.devices,
        "registered": res.get("registered"),
        "soak_seconds": seconds,
        "requests": requests,
        "failed_requests": sum(failed_by.values()),
        "failed_by_resource_status": failed_by,
        "req_per_s": round(requests / seconds, 1) if seconds else None,
        "latency_by_method": methods,
        "latency_by_resource": resources,
        "registration_phase": {"seconds": soak.timings.get("registration_s"),
                               "requests": len(reg_lat.get("all", ())),
                               "failed": sum(reg_failed.values()), "failed_by_resource_status": reg_failed,
                               "latency": _lat_summary(reg_lat.get("all", array.array("d")))},
        "achieved": {"polls": c.get("polls"), "polls_expected": round(expected_polls),
                     "polls_ratio": round(c.get("polls", 0) / expected_polls, 3) if expected_polls else None,
                     "readings_posted": c.get("readings_posted"),
                     "readings_expected": round(expected_readings),
                     "poll_rates_devices_follow": dict(polls_seen)},
        "cpu": cpu,
        "memory": mem,
        "worker_pids_seen": worker_pids,
        "worker_restarts": max(0, len(worker_pids) - a.workers),
        "server_connections_established": mm([float(x) for x in established]),
        "device_last_errors": dict(errors.most_common(10)),
        "devices_with_failures": sum(1 for ag in agents if ag.counters.failures),
    }
    return summary


def print_report(soak: Soak, s: dict[str, Any]) -> None:
    a = soak.args
    m = soak.result["machine"]
    print()
    print(f"derflex soak — {m['date']} — nproc {m['nproc']} ({m['cpu_model']}), {m['memory']}, Python {m['python']}, "
          f"SQLite {m['sqlite']}" + (f", PostgreSQL {m['postgresql']}" if m.get("postgresql") else ""))
    print(f"server: {a.workers} worker(s) x {a.threads} threads, {soak.result['database']}, pollRate {a.poll_rate} s; "
          f"fleet: {a.devices} devices ({soak.result.get('kinds')}), postRate {a.post_rate} s, "
          f"{soak.result.get('waves', {}).get('count')} waves x {a.fleet_threads} threads in one process")
    print(f"soak {s['soak_seconds']:.0f} s: {s['requests']:,} requests, {s['req_per_s']} req/s, "
          f"FAILED {s['failed_requests']}" + (f" {s['failed_by_resource_status']}" if s["failed_requests"] else ""))
    rp = s["registration_phase"]
    print(f"registration: {rp['seconds']} s, {rp['requests']:,} requests, {rp['failed']} failed"
          + (f" {rp['failed_by_resource_status']}" if rp["failed"] else ""))
    head = f"  {'':<44}{'n':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    print(head)
    for name, v in list(s["latency_by_method"].items()) + list(s["latency_by_resource"].items()):
        if v.get("n"):
            print(f"  {name:<44}{v['n']:>9}{v['p50_ms']:>9}{v['p90_ms']:>9}{v['p99_ms']:>9}{v['max_ms']:>9}")
    ach = s["achieved"]
    print(f"achieved: polls {ach['polls']} of {ach['polls_expected']} expected ({ach['polls_ratio']}), readings "
          f"posted {ach['readings_posted']} (about {ach['readings_expected']} intervals completed); devices follow "
          f"pollRate {ach['poll_rates_devices_follow']}")
    cpu = s["cpu"]
    print(f"CPU (% of one core, mean/max over samples): server {cpu['server_pct_core']}, load generator "
          f"{cpu['load_generator_pct_core']}, machine busy (% of all {NPROC} cores) {cpu['machine_busy_pct']}")
    print(f"  2030.5 workers' main threads (gunicorn's accept/keep-alive loop): {cpu['workers_main_thread_pct_core']}")
    for role, v in cpu["by_role_pct_core"].items():
        print(f"  {role:<28} CPU {v}  memory {s['memory'].get(role)}")
    print(f"server-side TCP connections established (samples): {s['server_connections_established']}")
    print(f"server memory total: {s['memory'].get('server_total')}; workers' RSS slope MiB/min "
          f"{s['memory']['workers_rss_slope_mib_per_min']}; worker restarts {s['worker_restarts']}")
    print(f"counters (soak): {soak.result.get('counters_soak')}")
    final = soak.result.get("counters_final", {})
    print(f"database rows at the end: {soak.result.get('database_rows')}; the fleet's own count over the whole run: "
          f"readings posted {final.get('readings_posted')}, responses posted {final.get('responses_posted')}")
    print(f"change-counter bumps during the soak (cache invalidations by family): "
          f"{soak.result.get('change_counter_bumps_soak')}")
    if soak.events:
        print(f"events published: {len(soak.events)} x {soak.events[0]['events']}")
    diag = soak.result.get("diagnosis_soak")
    if diag:
        app_cpu = sum(v["cpu_s"] for v in diag.values())
        worker_cpu = (s["cpu"]["by_role_pct_core"].get("2030.5 worker", {}).get("mean") or 0) / 100 * s["soak_seconds"]
        print(f"diagnosis: thread CPU inside the Flask app {app_cpu:.1f} s of the workers' ~{worker_cpu:.0f} s "
              "(the rest: gunicorn, TLS handshakes and records, HTTP parsing, the scheduler)")
        print(f"  {'':<44}{'n':>9}{'CPU ms/req':>12}{'CPU s':>9}{'wall ms/req':>13}")
        for k, v in diag.items():
            print(f"  {k:<44}{v['n']:>9}{v['cpu_ms_per_req']:>12}{v['cpu_s']:>9}{v['wall_ms_per_req']:>13}")
    lp = soak.result.get("server_log", {})
    print(f"server log: {lp.get('lines')} lines, {lp.get('problem_lines')} look like problems")
    for ln in lp.get("first_problems", [])[:10]:
        print(f"  | {ln[:200]}")
    if s["device_last_errors"]:
        print(f"devices' last errors: {s['device_last_errors']}")


# ------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench_soak.py",
        description=(
            "Soak a real `derflex serve` with a fleet of simulated IEEE 2030.5 devices (der_sim) polling at a "
            "compressed pollRate over TLS 1.2 CCM8 with client certificates, for --minutes. Reports failed "
            "requests (the target is zero), latency percentiles per method and resource, requests/s, the "
            "server's CPU and memory per process (from /proc) and the load generator's CPU, and writes JSON to "
            "bench/results/soak-<UTC timestamp>.json."),
        epilog=(
            "The load generator runs in this process on the same machine: on a small machine it competes "
            "with the server for the cores, and both are reported. Devices follow the pollRate the server "
            "announces (DERFLEX_POLL_RATE). A 2,000-device, 10-minute run takes about 15 minutes in all (the "
            "devices start over one pollRate)."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--devices", type=int, default=2000, help="simulated devices (one certificate and connection each)")
    p.add_argument("--minutes", type=float, default=10.0, help="length of the soak after every device registered")
    p.add_argument("--poll-rate", type=int, default=300,
                   help="the compressed pollRate in seconds (DERFLEX_POLL_RATE; also /tm's); 300 s is what one "
                        "worker sustained with 2,000 devices on 2 shared cores (docs/benchmarks.md)")
    p.add_argument("--post-rate", type=int, default=300,
                   help="seconds between a device's DERStatus/DERAvailability PUTs and meter-reading POSTs")
    p.add_argument("--interval", type=int, default=60, help="metering interval of the readings, seconds")
    p.add_argument("--workers", type=int, default=1, help="gunicorn worker processes of the 2030.5 server")
    p.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    p.add_argument("--fleet-threads", type=int, default=4,
                   help="threads driving each wave (der_sim.fleet.Fleet workers); in all --waves x this")
    p.add_argument("--waves", type=int, default=40,
                   help="the fleet starts in this many waves spread over one pollRate, so that the devices' "
                        "cycles are spread over the pollRate (1: all at once)")
    p.add_argument("--client-timeout", type=float, default=10.0, help="a device's request timeout, seconds")
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite",
                   help="the embedded default (SQLite in the temporary home) or a scratch PostgreSQL database")
    p.add_argument("--postgres-url", default=DEFAULT_PG,
                   help="admin URL of the local PostgreSQL where the scratch database is created and dropped")
    p.add_argument("--event-every", type=int, default=180,
                   help="publish one event per device this often, seconds (0: no program, no events)")
    p.add_argument("--event-duration", type=int, default=60, help="length of each event, seconds")
    p.add_argument("--event-randomize", type=int, default=30,
                   help="randomizeStart of the events, seconds (devices spread their start, and so their "
                        "Responses, over it, as with a publish by the scheduler; 0: none)")
    p.add_argument("--no-scheduler", dest="scheduler", action="store_false",
                   help="switch the flex scheduler off (DERFLEX_SCHEDULER=false); on by default")
    p.add_argument("--register-timeout", type=float, default=600.0, help="how long to wait for all devices to register")
    p.add_argument("--sample-seconds", type=float, default=5.0, help="how often the processes are sampled")
    p.add_argument("--progress-seconds", type=float, default=30.0, help="how often a progress line is printed")
    p.add_argument("--seed", type=int, default=2030, help="seed of the fleet (kinds, ratings, load shapes)")
    p.add_argument("--smoke", action="store_true",
                   help="quick check of the script: 100 devices, 1.5 minutes, pollRate 10 s, postRate 20 s, "
                        "a 10 s event every 30 s (explicit options still win)")
    p.add_argument("--diagnose", action="store_true",
                   help="diagnostic: start the same server (server.serve.run) through this script with its 2030.5 "
                        "app wrapped to measure thread CPU per request by method and resource; the cost of the "
                        "wrapper is small but the figures of such a run are not the product's")
    p.add_argument("--_serve", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="folder for the JSON results")
    p.add_argument("--keep", action="store_true", help="keep the temporary home (certificates, database, server log)")
    raw = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(raw)
    if args.smoke:
        given = {a.split("=", 1)[0] for a in raw if a.startswith("--")}
        for opt, value in (("--devices", 100), ("--minutes", 1.5), ("--poll-rate", 10), ("--post-rate", 20),
                           ("--event-every", 30), ("--event-duration", 10), ("--event-randomize", 5),
                           ("--sample-seconds", 2.0), ("--progress-seconds", 15.0)):
            if opt not in given:
                setattr(args, opt[2:].replace("-", "_"), value)
    if min(args.devices, args.workers, args.threads, args.fleet_threads, args.waves, args.poll_rate, args.post_rate,
           args.interval) < 1:
        p.error("--devices, --workers, --threads, --fleet-threads, --poll-rate, --post-rate and --interval "
                "must be at least 1")
    if not 0 < args.minutes <= 24 * 60:
        p.error("--minutes must be positive (and at most a day)")
    if min(args.event_every, args.event_randomize) < 0 or args.event_randomize > 3600 or args.event_duration < 1:
        p.error("--event-every and --event-randomize must not be negative (randomize at most 3600), "
                "--event-duration at least 1")
    if not 0.5 <= args.sample_seconds <= 60:
        p.error("--sample-seconds must be 0.5 … 60")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args._serve is not None:
        _diag_serve(args._serve)
        return 0
    client_log = logging.FileHandler(Path(tempfile.gettempdir()) / f"derflex-soak-client-{os.getpid()}.log")
    client_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.getLogger("der_sim").addHandler(client_log)  # device warnings: to a file, not the terminal
    logging.getLogger("der_sim").setLevel(logging.WARNING)
    logging.getLogger("der_sim").propagate = False
    soak = Soak(args)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    interrupted = False

    def on_term(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    summary: dict[str, Any] = {}
    failure: str | None = None
    try:
        soak.prepare()
        soak.start_server()
        soak.start_fleet()
        soak.soak()
    except KeyboardInterrupt:
        interrupted = True
        failure = "interrupted"
        _say("interrupted: stopping everything")
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
        _say(f"FAILED: {failure}")
    finally:
        try:
            soak.stop_sampling()
            soak.stop_fleet()
            if soak.fleet is not None:  # after the last request: to compare with the database's rows
                soak.result["counters_final"] = soak._counters()
            if soak.db is not None and soak.server is not None:
                try:
                    soak.result["database_rows"] = soak.database_counts()
                except Exception as exc:
                    soak.result["database_rows"] = f"could not count: {exc}"
        finally:
            soak.stop_server()
            soak.result["server_log"] = soak.log_problems()
            if soak.stats is not None and soak.fleet is not None:
                summary = summarise(soak)
            args.out.mkdir(parents=True, exist_ok=True)
            if summary.get("failed_requests") or summary.get("registration_phase", {}).get("failed") or failure:
                if soak.log.exists():
                    kept = args.out / f"soak-{stamp}.server.log"
                    shutil.copy(soak.log, kept)
                    soak.result["server_log_copy"] = str(kept)
            client_log.close()
            client_path = Path(client_log.baseFilename)
            if client_path.exists():
                if client_path.stat().st_size and (summary.get("failed_requests") or failure):
                    shutil.copy(client_path, args.out / f"soak-{stamp}.client.log")
                client_path.unlink()
            soak.cleanup()
    soak.result.update({"summary": summary, "timings": soak.timings, "events": soak.events, "failure": failure,
                        "samples": soak.sampler.samples if soak.sampler else [],
                        "loadavg_end": [round(x, 2) for x in os.getloadavg()]})
    out = args.out / f"soak-{stamp}.json"
    out.write_text(json.dumps(soak.result, indent=1, default=str) + "\n")
    if summary:
        print_report(soak, summary)
    print(f"\nresults: {out}")
    if interrupted:
        return 130
    return 1 if failure or summary.get("failed_requests") else 0


if __name__ == "__main__":
    sys.exit(main())

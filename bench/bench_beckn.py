#!/usr/bin/env python
"""Beckn BPP benchmark: synchronous ACK latency at a sustained request rate, and callbacks delivered.

Target (the Beckn issue): p99 ACK <= 50 ms at 100 requests/s on this machine.

What one run does (only 127.0.0.1; every loop bounded in count and time):

  1. Set-up: a fresh temporary home prepared like a first `derflex serve` (SQLite in it, or with
     --postgres URL a private database created on that server and dropped at the end); --devices
     devices registered out of band and one program (every day 16:00-21:00, batteries and EV
     chargers); a BAP identity (Ed25519) put in the file registry, its bap_uri the receiver below.
  2. The callback receiver, `der_sim.bap_receiver.CallbackReceiver`, in a process of its own (so
     verifying callbacks does not take the load generator's GIL): it verifies the BPP's signature
     on every callback, records the arrival time (CLOCK_MONOTONIC, which every process of the
     machine shares) and a summary (items in a catalog, an order's status, an error code).
  3. The server: a real `derflex serve` subprocess (its own session) with DERFLEX_SCHEDULER=false
     and a fixed free DERFLEX_BECKN_BIND; its forked BPP listener (one gunicorn gthread worker with
     the BecknWorker) is what is measured. One order is enrolled through `der_sim.bap.Bap`
     (search -> select -> init -> confirm, --order-devices batteries) and its status asked once;
     then a short unrecorded warm-up.
  4. Sustained phase: an open-loop generator. Send times are fixed in advance (--rate per second
     for --seconds); a dispatcher thread hands each request to a bounded thread pool (--pool) at
     its time and never waits for an answer, so a slow ACK does not slow the schedule. Each request
     is a signed `BapClient.send`: --search-share searches (category demand-flexibility, device
     kind battery), the rest `status` of the enrolled order (deterministic mix, --seed). ACK
     latency is measured from the scheduled send time (queueing in the pool counts) and from the
     actual send. Anything but 200 ACK is counted (NACK, other status, network error): must be 0.
  5. Callbacks of the phase: each ACKed request must get exactly one verified callback of the
     right action (on_search with the catalog's item, on_status with the order): no loss, no
     duplicate, no refusal. Reported: callbacks/s overall and in steady state (the middle of the
     phase: the first and last 10 % left out), per-second min/max, and the delay from the ACK (the
     client's receipt of it) to the callback's arrival, p50/p99.
  6. Burst phase: --burst requests (same mix) all queued at once on --burst-pool threads: peak ACK
     throughput and latency, then how fast the outbox drains (callbacks/s during and after the
     burst, the largest backlog of ACKed-but-not-called-back requests).
  7. CPU: user+system seconds of the server's processes (the BPP worker alone, and all of
     them), of PostgreSQL's processes, of the receiver and of this process, per phase.
  8. A table, and JSON in bench/results/beckn-<UTC timestamp>.json with the machine (nproc, CPU
     model, memory, Python, SQLite / PostgreSQL versions, load average).

The server is stopped with SIGTERM (then SIGKILL of its session after 20 s), the receiver told to
stop (then terminated), the private PostgreSQL database dropped, and the home removed — also on
errors and Ctrl-C.

Examples:
    .venv/bin/python bench/bench_beckn.py --quick       # smoke run: 10 s at 50/s, 300-request burst
    .venv/bin/python bench/bench_beckn.py               # 60 s at 100/s, then a 2,000-request burst
    .venv/bin/python bench/bench_beckn.py --postgres postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/bench_beckn.py --rate 200 --seconds 30 --no-burst
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import hashlib
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

HOST = "127.0.0.1"
from benchlib import PgDatabase, machine_info  # noqa: E402
TARGET_P99_MS = 50.0
TARGET_RATE = 100.0  # on PostgreSQL; the embedded SQLite default: TARGET_RATE_SQLITE (#17 item 4)
TARGET_RATE_SQLITE = 50.0
TARGET_BEHIND_MS = 2000.0  # callbacks: no request waits longer than this after its ACK (backlog behind)
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

PROGRAM = {"name": "Peak Saver", "currency": "USD", "description": "Bench peak saver",
           "window": {"weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "16:00",
                      "end": "21:00", "tz": "America/Los_Angeles"},
           "requested_kw": 50.0, "price_cap": 0.4, "incentive": {"kind": "pay_as_clear"},
           "eligible_kinds": ["battery", "ev_charger"], "lead_time_s": 3600}
SEARCH_MESSAGE = {"intent": {"category": {"descriptor": {"code": "demand-flexibility"}},
                             "fulfillment": {"tags": [{"descriptor": {"code": "der"}, "list": [
                                 {"descriptor": {"code": "device-kind"}, "value": "battery"}]}]}}}
CALLBACK_OF = {"search": "on_search", "status": "on_status"}


def _say(msg: str) -> None:
    print(msg, flush=True)


def _lfdi(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:40].upper()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, seconds: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {seconds:g} s")


def pct(values: list[float], q: float) -> float | None:
    """Percentile q (0..100), linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def dist_ms(seconds: list[float]) -> dict[str, Any]:
    """p50/p90/p99/max/mean in milliseconds of a list of durations in seconds."""
    if not seconds:
        return {"n": 0}
    ms = [s * 1000.0 for s in seconds]
    return {"n": len(ms), "p50": round(pct(ms, 50), 2), "p90": round(pct(ms, 90), 2),  # type: ignore[arg-type]
            "p99": round(pct(ms, 99), 2), "max": round(max(ms), 2),  # type: ignore[arg-type]
            "mean": round(sum(ms) / len(ms), 2), "min": round(min(ms), 2)}


# ------------------------------------------------------------------------------- the machine


# ---------------------------------------------------------------------------------- CPU


def _proc_stat(pid: str) -> tuple[int, int, int, float, str] | None:
    """(ppid, session, pgid, user+system seconds, comm) of a process, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1:raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    # fields[0] = state, [1] ppid, [2] pgrp, [3] session, ... [11] utime, [12] stime
    return int(fields[1]), int(fields[3]), int(fields[2]), (int(fields[11]) + int(fields[12])) / CLK_TCK, comm


def cpu_snapshot(server_sid: int | None, bpp_worker: int | None) -> dict[str, dict[int, float]]:
    """CPU seconds so far per process: the server's session, its BPP worker, PostgreSQL's processes."""
    out: dict[str, dict[int, float]] = {"server": {}, "bpp_worker": {}, "postgres": {}}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _proc_stat(entry)
        if st is None:
            continue
        _ppid, sid, _pgid, cpu, comm = st
        pid = int(entry)
        if server_sid is not None and sid == server_sid:
            out["server"][pid] = cpu
        if bpp_worker is not None and pid == bpp_worker:
            out["bpp_worker"][pid] = cpu
        if comm.startswith("postgres"):
            out["postgres"][pid] = cpu
    return out


def cpu_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """CPU used between two snapshots: per process alive at the end (a process that started in
    between counts from 0; one that ended in between is not counted)."""
    out = {}
    for key, now in after.items():
        then = before.get(key, {})
        if isinstance(now, dict):
            out[key] = round(sum(v - then.get(pid, 0.0) for pid, v in now.items()), 2)
        else:
            out[key] = round(now - then, 2)
    return out


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(entry)
            if st is not None and st[0] == pid:
                kids.append(int(entry))
    return sorted(kids)


def find_bpp_worker(server_pid: int) -> int | None:
    """The BPP's gunicorn worker: `derflex serve` forks the BPP (a gunicorn master of its own) before
    its own gunicorn forks its 2030.5 workers; the BPP master is the child that itself has a child
    running the BPP app (its cmdline says derflex-beckn when setproctitle is there)."""
    for child in _children(server_pid):
        grandkids = _children(child)
        for g in grandkids:
            try:
                cmd = Path(f"/proc/{g}/cmdline").read_bytes()
            except OSError:
                continue
            if b"derflex-beckn" in cmd:
                return g
        if grandkids:
            try:
                if b"derflex-beckn" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return grandkids[0]
            except OSError:
                pass
    # without setproctitle: the first child of serve that has children of its own
    for child in _children(server_pid):
        grandkids = _children(child)
        if grandkids:
            return grandkids[0]
    return None


# ---------------------------------------------------------------------------- the receiver


def _receiver_main(conn: Any, bpp_id: str, bpp_entry: dict[str, Any], port: int, lifetime_s: float,
                   v2_key: tuple[str, str, str] | None = None) -> None:
    """The receiver process: a CallbackReceiver that also records each callback's arrival time and
    a summary, answering commands from the bench over a pipe until told to stop (or orphaned).
    `v2_key` (the BAP's subscriber id, key id, private key base64): Beckn v2.0.0 callbacks, answered
    with counter-signed Acks (--version 2.0, bench/bench_beckn_v2.py)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench stops it; Ctrl-C goes to the bench
    from der_sim.bap import registry_lookup
    from der_sim.bap_receiver import CallbackReceiver, CallbackTimeout
    from server.beckn.registry import parse_subscribers

    lock = threading.Lock()
    light: list[tuple[Any, ...]] = []

    def summary(action: str, message: dict[str, Any] | None) -> Any:
        if not message:
            return None
        if action == "on_search":
            providers = (message.get("catalog") or {}).get("providers") or [{}]
            return len(providers[0].get("items") or ())
        if action == "on_status" and "contract" in message:  # v2: the contract's status code
            return ((message.get("contract") or {}).get("status") or {}).get("code")
        if action == "on_status":
            return (message.get("order") or {}).get("status")
        if action == "on_discover":  # v2: the program's resource in the catalog
            return sum(len(c.get("resources") or ()) for c in message.get("catalogs") or ())
        return None

    class TimedReceiver(CallbackReceiver):
        def _record(self, **fields: Any) -> Any:
            t = time.monotonic()
            cb = super()._record(**fields)
            err = cb.error or {}
            with lock:
                light.append((cb.seq, cb.message_id, cb.action, t, cb.accepted, cb.failure, cb.status,
                              err.get("code", err.get("errorCode")), summary(cb.action, cb.message)))
            return cb

    lookup = registry_lookup(parse_subscribers([bpp_entry]))
    from server.beckn.signing import SigningKey

    receiver = TimedReceiver(bpp_id, lookup, host=HOST, port=port, path="/bap", max_records=100_000,
                             lifetime_s=lifetime_s, v2_key=SigningKey.from_b64(*v2_key) if v2_key else None).start()
    parent = os.getppid()
    conn.send(("ready", receiver.port))
    try:
        while True:
            if not conn.poll(0.5):
                if os.getppid() != parent:
                    return  # the bench is gone
                continue
            try:
                cmd, *args = conn.recv()
            except EOFError:
                return
            if cmd == "wait":
                message_id, action, timeout = args
                try:
                    cb = receiver.wait_for(message_id=message_id, action=action, timeout=timeout)
                    conn.send(("ok", {"seq": cb.seq, "action": cb.action, "context": cb.context,
                                      "message": cb.message, "error": cb.error, "verified": cb.verified,
                                      "failure": cb.failure, "status": cb.status}))
                except CallbackTimeout as exc:
                    conn.send(("timeout", str(exc)))
            elif cmd == "count":
                with lock:
                    conn.send(("ok", len(light)))
            elif cmd == "dump":
                with lock:
                    conn.send(("ok", [r for r in light if r[0] > args[0]]))
            elif cmd == "cpu":
                t = os.times()
                conn.send(("ok", t.user + t.system))
            elif cmd == "stop":
                receiver.stop()
                conn.send(("ok", None))
                return
    finally:
        receiver.stop()


class RemoteReceiver:
    """The bench's handle on the receiver process; `wait_for` is what `der_sim.bap.Bap` uses."""

    def __init__(self, bpp_id: str, bpp_entry: dict[str, Any], port: int, lifetime_s: float,
                 v2_key: tuple[str, str, str] | None = None):
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._lock = threading.Lock()
        self.proc = ctx.Process(target=_receiver_main, args=(child_conn, bpp_id, bpp_entry, port, lifetime_s, v2_key),
                                name="bench-beckn-receiver", daemon=True)
        self.proc.start()
        child_conn.close()
        if not self._conn.poll(START_TIMEOUT_S):
            self.close()
            raise RuntimeError("the callback receiver did not start")
        _, self.port = self._conn.recv()

    def _ask(self, *cmd: Any, timeout: float = 30.0) -> Any:
        with self._lock:
            self._conn.send(cmd)
            if not self._conn.poll(timeout):
                raise RuntimeError(f"the receiver did not answer {cmd[0]!r} within {timeout:g} s")
            return self._conn.recv()

    def wait_for(self, *, message_id: str | None = None, action: str | None = None, timeout: float = 10.0,
                 **_: Any) -> Any:
        from der_sim.bap_receiver import Callback, CallbackTimeout

        kind, value = self._ask("wait", message_id, action, timeout, timeout=timeout + 10)
        if kind == "timeout":
            raise CallbackTimeout(value)
        return Callback(seq=value["seq"], action=value["action"], context=value["context"],
                        message=value["message"], error=value["error"], verified=value["verified"],
                        failure=value["failure"], status=value["status"])

    def count(self) -> int:
        return int(self._ask("count")[1])

    def dump(self, after_seq: int = 0) -> list[tuple[Any, ...]]:
        return list(self._ask("dump", after_seq, timeout=60)[1])

    def cpu(self) -> float:
        return float(self._ask("cpu")[1])

    def close(self) -> None:
        if self.proc.is_alive():
            try:
                self._ask("stop", timeout=10)
            except (OSError, EOFError, RuntimeError):
                pass
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.terminate()
                self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(5)
        self._conn.close()


# ------------------------------------------------------------------------------- the load


@dataclass
class Sent:
    """One request: what, when it was due, when it went and came back, and how it was answered."""

    i: int
    action: str
    due: float
    message_id: str = ""
    start: float = 0.0
    end: float = 0.0
    status: int = 0
    ack: str | None = None
    error: str | None = None
    thread: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.ack == "ACK"


@dataclass
class Phase:
    name: str
    sent: list[Sent] = field(default_factory=list)
    t_first: float = 0.0  # first scheduled send
    t_last_due: float = 0.0
    t_done: float = 0.0  # last ACK (or error)
    cpu_before: dict[str, float] = field(default_factory=dict)
    cpu_after: dict[str, float] = field(default_factory=dict)
    callbacks: list[tuple[Any, ...]] = field(default_factory=list)
    drained_at: float | None = None
    late_dispatch: int = 0


class Load:
    """Signed requests from a bounded thread pool; one BapClient per thread."""

    def __init__(self, make_client: Any, order_id: str, order_tx: str):
        self.make_client = make_client
        self.order_id, self.order_tx = order_id, order_tx
        self._local = threading.local()

    def _client(self) -> Any:
        c = getattr(self._local, "client", None)
        if c is None:
            c = self._local.client = self.make_client()
        return c

    def one(self, r: Sent) -> Sent:
        from der_sim.bap import BapNetworkError

        client = self._client()
        r.thread = threading.current_thread().name
        r.start = time.monotonic()
        try:
            if r.action == "search":
                reply = client.send("search", SEARCH_MESSAGE, message_id=r.message_id)
            else:
                reply = client.send("status", {"order_id": self.order_id}, transaction_id=self.order_tx,
                                    message_id=r.message_id)
            r.status, r.ack = reply.status, reply.ack
            if not reply.ok:
                r.error = json.dumps(reply.error)[:200] if reply.error else f"HTTP {reply.status} {reply.ack}"
        except BapNetworkError as exc:
            r.error = f"network: {exc}"[:200]
        except Exception as exc:  # counted, never fatal to the schedule
            r.error = f"{type(exc).__name__}: {exc}"[:200]
        r.end = time.monotonic()
        return r


def mix(n: int, search_share: float, seed: int) -> list[str]:
    """n actions, round(n * share) of them searches, in a shuffled (reproducible) order."""
    n_search = round(n * search_share)
    actions = ["search"] * n_search + ["status"] * (n - n_search)
    random.Random(seed).shuffle(actions)
    return actions


def run_open_loop(load: Load, phase: Phase, rate: float, seconds: float, pool_size: int, search_share: float,
                  seed: int, stop: threading.Event) -> None:
    """Requests due at t0 + i/rate; each handed to the pool at its time, never waiting for answers."""
    n = int(round(rate * seconds))
    actions = mix(n, search_share, seed)
    t0 = time.monotonic() + 0.2
    phase.sent = [Sent(i, a, t0 + i / rate, message_id=str(uuid.uuid4())) for i, a in enumerate(actions)]
    phase.t_first, phase.t_last_due = t0, phase.sent[-1].due
    futures = []
    with cf.ThreadPoolExecutor(pool_size, thread_name_prefix="load") as pool:
        try:
            for r in phase.sent:
                delay = r.due - time.monotonic()
                if delay > 0:
                    if stop.wait(delay):
                        break
                elif delay < -0.005:
                    phase.late_dispatch += 1  # the dispatcher itself was late (counted, still sent)
                futures.append(pool.submit(load.one, r))
            done, pending = cf.wait(futures, timeout=max(30.0, 2 * load_timeout(load)))
            for f in pending:
                f.cancel()
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    phase.t_done = max((r.end for r in phase.sent if r.end), default=time.monotonic())


def run_burst(load: Load, phase: Phase, n: int, pool_size: int, search_share: float, seed: int) -> None:
    """n requests queued at once on pool_size threads."""
    actions = mix(n, search_share, seed)
    t0 = time.monotonic()
    phase.sent = [Sent(i, a, t0, message_id=str(uuid.uuid4())) for i, a in enumerate(actions)]
    phase.t_first = phase.t_last_due = t0
    with cf.ThreadPoolExecutor(pool_size, thread_name_prefix="burst") as pool:
        futures = [pool.submit(load.one, r) for r in phase.sent]
        try:
            _done, pending = cf.wait(futures, timeout=max(60.0, n * 0.2))
            for f in pending:
                f.cancel()
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    phase.t_done = max((r.end for r in phase.sent if r.end), default=time.monotonic())


def load_timeout(load: Load) -> float:
    return float(getattr(load._client(), "timeout", 10.0))


# ------------------------------------------------------------------------------ analysis


def analyse(phase: Phase, *, trim_share: float = 0.1, callback_of: dict[str, str] = CALLBACK_OF) -> dict[str, Any]:
    """ACK latency, errors, callback accounting and rates of one phase."""
    sent = phase.sent
    acked = [r for r in sent if r.ok]
    errors = [r for r in sent if r.end and not r.ok]
    not_sent = [r for r in sent if not r.end]
    out: dict[str, Any] = {
        "requests": len(sent), "acked": len(acked), "errors": len(errors), "not_sent": len(not_sent),
        "error_samples": sorted({r.error or "" for r in errors})[:5],
        "by_action": {a: sum(1 for r in sent if r.action == a) for a in ("search", "status")},
        "dispatcher_late_over_5ms": phase.late_dispatch,
        "threads_used": len({r.thread for r in sent if r.thread}),
    }
    out["ack_ms_from_due"] = dist_ms([r.end - r.due for r in acked])
    out["ack_ms_from_send"] = dist_ms([r.end - r.start for r in acked])
    out["queue_ms"] = dist_ms([r.start - r.due for r in acked])
    for a in ("search", "status"):
        out[f"ack_ms_from_due_{a}"] = dist_ms([r.end - r.due for r in acked if r.action == a])
    if acked:
        span = max(r.end for r in acked) - min(r.start for r in acked)
        out["ack_per_s"] = round(len(acked) / span, 1) if span > 0 else None
        out["offered_per_s"] = (round(len(sent) / (phase.t_last_due - phase.t_first), 1)
                                if phase.t_last_due > phase.t_first else None)

    # callbacks: exactly one accepted, right action, per ACKed request; nothing unexpected
    by_mid: dict[str, list[tuple[Any, ...]]] = {}
    for cb in phase.callbacks:
        by_mid.setdefault(cb[1], []).append(cb)
    ours = {r.message_id: r for r in sent}
    missing, duplicate, refused, wrong_action, with_error, bad_summary = [], [], [], [], [], []
    delays, end_to_end, arrivals = [], [], []
    for r in acked:
        cbs = by_mid.get(r.message_id, [])
        good = [c for c in cbs if c[4]]
        refused += [c for c in cbs if not c[4]]
        if not good:
            missing.append(r.message_id)
            continue
        if len(good) > 1:
            duplicate.append(r.message_id)
        cb = good[0]
        if cb[2] != callback_of[r.action]:
            wrong_action.append(r.message_id)
        if cb[7] is not None:
            with_error.append((r.message_id, cb[7]))
        elif (r.action == "search" and cb[8] != 1) or (r.action == "status" and cb[8] != "ACTIVE"):
            bad_summary.append((r.action, cb[8]))
        delays.append(cb[3] - r.end)
        end_to_end.append(cb[3] - r.start)
        arrivals.append(cb[3])
    unexpected = [c for c in phase.callbacks if c[1] not in ours]
    out["callbacks"] = {
        "received": len(phase.callbacks), "matched": len(arrivals), "missing": len(missing),
        "duplicate": len(duplicate), "refused": len(refused), "wrong_action": len(wrong_action),
        "with_error": len(with_error), "unexpected_summary": len(bad_summary), "not_ours": len(unexpected),
        "error_samples": with_error[:3], "summary_samples": bad_summary[:3],
        "exactly_one_each": not (missing or duplicate or refused or wrong_action or unexpected),
    }
    out["ack_to_callback_ms"] = dist_ms(delays)
    out["send_to_callback_ms"] = dist_ms(end_to_end)
    if arrivals:
        first_cb, last_cb = min(arrivals), max(arrivals)
        out["last_callback_after_last_ack_s"] = round(last_cb - phase.t_done, 3)
        wall = last_cb - phase.t_first
        out["callbacks_per_s_overall"] = round(len(arrivals) / wall, 1) if wall > 0 else None
        dur = phase.t_last_due - phase.t_first
        if dur >= 5:  # steady state: the middle of the phase
            lo, hi = phase.t_first + trim_share * dur, phase.t_last_due - trim_share * dur
            n_mid = sum(1 for t in arrivals if lo <= t < hi)
            out["callbacks_per_s_steady"] = round(n_mid / (hi - lo), 1)
            bins: dict[int, int] = {}
            for t in arrivals:
                if lo <= t < hi:
                    bins[int(t - lo)] = bins.get(int(t - lo), 0) + 1
            whole = [bins.get(k, 0) for k in range(int(hi - lo))]
            if whole:
                out["callbacks_per_s_steady_min_max"] = [min(whole), max(whole)]
            out["steady_window_s"] = [round(lo - phase.t_first, 1), round(hi - phase.t_first, 1)]
        # burst view: callbacks while ACKs were still coming, the drain after, the largest backlog
        during = sum(1 for t in arrivals if t <= phase.t_done)
        after = len(arrivals) - during
        out["callbacks_during_acks"] = during
        ack_span = phase.t_done - phase.t_first
        out["callbacks_per_s_during_acks"] = round(during / ack_span, 1) if ack_span > 0 else None
        out["backlog_at_last_ack"] = after
        out["drain_per_s_after_acks"] = (round(after / (last_cb - phase.t_done), 1)
                                         if after and last_cb > phase.t_done else None)
        out["callbacks_per_s_first_to_last"] = (round(len(arrivals) / (last_cb - first_cb), 1)
                                                if last_cb > first_cb else None)
        events = sorted([(r.end, 1) for r in acked] + [(t, -1) for t in arrivals])
        backlog = peak = 0
        for _t, d in events:
            backlog += d
            peak = max(peak, backlog)
        out["max_backlog"] = peak
    if phase.cpu_before and phase.cpu_after:
        span = (max(arrivals) if arrivals else phase.t_done) - phase.t_first
        cpu = cpu_delta(phase.cpu_before, phase.cpu_after)
        out["cpu_s"] = cpu
        out["wall_s"] = round(span, 2)
        if acked:
            out["server_cpu_ms_per_request"] = round(1000 * cpu["server"] / len(acked), 2)
            out["bpp_worker_cpu_ms_per_request"] = round(1000 * cpu["bpp_worker"] / len(acked), 2)
            if span > 0:
                out["bpp_worker_cpu_share_of_core"] = round(cpu["bpp_worker"] / span, 2)
    return out


# ------------------------------------------------------------------------------- the bench


class Bench:
    callback_of = CALLBACK_OF  # bench/bench_beckn_v2.py: discover/status in v2.0.0
    load_class: Any = None  # the Load of the requests (None: Load)

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.home = Path(tempfile.mkdtemp(prefix="derflex-bench-beckn-"))
        self.pg = PgDatabase(args.postgres, "derflex_bench_beckn") if args.postgres else None
        self.server: subprocess.Popen | None = None
        self.receiver: RemoteReceiver | None = None
        self.stop = threading.Event()
        self.bpp_worker: int | None = None
        self.result: dict[str, Any] = {
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "machine": machine_info(("gunicorn", "Flask", "SQLAlchemy", "psycopg", "cryptography")),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "database": "postgresql" if self.pg else "sqlite",
            "target": {"p99_ack_ms": TARGET_P99_MS, "rate_per_s": self._target_rate(),
                       "callback_behind_max_ms": TARGET_BEHIND_MS},
        }

    # ---------------------------------------------------------------------------- set-up
    def _target_rate(self) -> float:
        """The rate the targets are set at: 100/s on PostgreSQL, 50/s on the embedded SQLite."""
        return TARGET_RATE if self.args.postgres else TARGET_RATE_SQLITE

    def setup(self) -> None:
        from der_sim.bap import BapIdentity
        from server.bootstrap import prepare
        from server.config import from_env
        from server.db import migrate
        from server.services.bpp import keys as beckn_keys
        from server.services.sep2 import edev
        from server.services.flex import programs as flex

        if self.pg is not None:
            self.pg.create()
            self.result["machine"]["postgresql"] = self.pg.version()
        self.beckn_port = _free_port()
        self.env = {"DERFLEX_BECKN_BIND": f"{HOST}:{self.beckn_port}", "DERFLEX_SCHEDULER": "false",
                    "DERFLEX_UI_BIND": "off"}  # no dashboard: its CPU and port stay out of the figures
        if self.pg is not None:
            self.env["DERFLEX_DATABASE_URL"] = self.pg.url
        self.settings = from_env(self.env, home=self.home)
        db = prepare(self.settings, say=lambda _m: None)
        now = int(time.time())
        with db.transaction() as s:
            for i in range(self.args.devices):
                edev.register_out_of_band(s, _lfdi(f"bench-house-{i}"), now)
            self.program = flex.create_program(s, PROGRAM, now)["id"]
        revision = migrate.current_revision(db.engine)
        db.dispose()
        self.bpp_entry = beckn_keys.our_entry(self.settings, dt.datetime.now(dt.UTC))
        self.receiver_port = _free_port()
        self.identity = BapIdentity.generate("bench.bap.local", f"http://{HOST}:{self.receiver_port}/bap")
        beckn_keys.add_to_file_registry(self.settings, self.identity.subscriber())
        where = self.settings.db_url.split("@")[-1]
        _say(f"[{self.result['database']}] {where} at {revision}; {self.args.devices} devices, program "
             f"{self.program}; BPP on {HOST}:{self.beckn_port}, receiver on {HOST}:{self.receiver_port}")

    def start_receiver(self) -> None:
        from server.beckn.registry import subscriber_json

        lifetime = self.args.seconds + self.args.burst * 0.5 + 3 * self.args.drain_timeout + 600
        self.receiver = RemoteReceiver(self.settings.beckn_subscriber_id, subscriber_json(self.bpp_entry),
                                       self.receiver_port, lifetime)

    def start_server(self, *, ack_only: bool = False) -> None:
        log = self.home / ("server-ack-only.log" if ack_only else "server.log")
        http_port = _free_port()
        if ack_only:  # diagnostic: the BPP app alone, its BecknWorker never started
            cmd = [sys.executable, str(Path(__file__).resolve()), "--_serve-ack-only", str(self.home)]
        else:
            cmd = [sys.executable, "-m", "server.cli", "--home", str(self.home), "serve", "--bind",
                   f"{HOST}:{http_port}"]
        env = {**os.environ, **self.env, "PYTHONPATH": str(REPO)}
        with log.open("wb") as out:
            self.server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.home,
                                           start_new_session=True)  # its own session: killed whole if stuck
        if not ack_only:
            _wait_port(http_port, START_TIMEOUT_S, self.server)
        _wait_port(self.beckn_port, START_TIMEOUT_S, self.server)
        deadline = time.monotonic() + 10
        self.bpp_worker = None
        while self.bpp_worker is None and time.monotonic() < deadline:
            if ack_only:
                kids = _children(self.server.pid)
                self.bpp_worker = kids[0] if kids else None
            else:
                self.bpp_worker = find_bpp_worker(self.server.pid)
            if self.bpp_worker is None:
                time.sleep(0.1)
        _say(f"server pid {self.server.pid} (session){' ACK-ONLY' if ack_only else ''}, BPP worker pid {self.bpp_worker}")

    def stop_server(self) -> None:
        if self.server is None:
            return
        if self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.result["server_exit"] = self.server.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _say("server did not stop in 20 s: SIGKILL to its session")
                try:
                    os.killpg(self.server.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.server.wait(10)
                self.result["server_exit"] = "killed"
        # anything left in the server's session (the BPP follows its parent out within 0.5 s)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(
                (st := _proc_stat(e)) is not None and st[1] == self.server.pid
                for e in os.listdir("/proc") if e.isdigit()):
            time.sleep(0.2)
        try:
            os.killpg(self.server.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def make_client(self, timeout: float = 10.0) -> Any:
        from der_sim.bap import BapClient, registry_lookup

        return BapClient(self.identity, self.settings.beckn_subscriber_id, f"http://{HOST}:{self.beckn_port}/beckn",
                         key_lookup=registry_lookup([self.bpp_entry]), domain=self.settings.beckn_domain,
                         ttl_s=self.args.ttl, timeout=timeout)

    def enroll(self) -> None:
        from der_sim.bap import Bap, Customer, DerDevice

        assert self.receiver is not None
        bap = Bap(self.make_client(), self.receiver, timeout=30)  # type: ignore[arg-type]
        t0 = time.monotonic()
        found = bap.search(device_kind="battery")
        (item,) = found["items"]
        n = min(self.args.order_devices, self.args.devices)
        devices = [DerDevice(_lfdi(f"bench-house-{i}"), kind="battery") for i in range(n)]
        order = bap.enroll(Customer("Bench Customer", email="bench@example.com", devices=devices), item["id"])
        if order["status"] != "ACTIVE" or not order["order_id"]:
            raise RuntimeError(f"enrollment failed: {order}")
        status = bap.status(order["order_id"], order["transaction_id"])["message"]["order"]
        states = [f["state"]["descriptor"]["code"] for f in status["fulfillments"]]
        self.order_id, self.order_tx = order["order_id"], order["transaction_id"]
        self.result["order"] = {"id": self.order_id, "devices": n, "fulfillment_states": states,
                                "item": item["id"], "setup_s": round(time.monotonic() - t0, 2)}
        _say(f"order {self.order_id[:12]}… ACTIVE with {n} devices ({', '.join(sorted(set(states)))}); "
             f"search + select + init + confirm + status in {time.monotonic() - t0:.2f} s")

    def warm_up(self, load: Load) -> None:
        """Unrecorded: a few of each request, sequential, and their callbacks awaited."""
        assert self.receiver is not None
        rs = [Sent(i, a, time.monotonic(), message_id=str(uuid.uuid4()))
              for i, a in enumerate(["search", "status"] * self.args.warmup)]
        for r in rs:
            load.one(r)
            if not r.ok:
                raise RuntimeError(f"warm-up {r.action} was not ACKed: {r.error}")
        for r in rs:
            self.receiver.wait_for(message_id=r.message_id, action=self.callback_of[r.action], timeout=30)

    def cpu(self) -> dict[str, Any]:
        assert self.server is not None and self.receiver is not None
        snap: dict[str, Any] = dict(cpu_snapshot(self.server.pid, self.bpp_worker))
        t = os.times()
        snap["bench"] = t.user + t.system
        snap["receiver"] = self.receiver.cpu()
        return snap

    def collect(self, phase: Phase, after_seq: int) -> int:
        """Wait (bounded) until every ACKed request of the phase has a callback; take the records."""
        assert self.receiver is not None
        if self.args.ack_only:  # nothing processes the requests: no callbacks to wait for
            phase.cpu_after = self.cpu()
            return after_seq
        expected = sum(1 for r in phase.sent if r.ok)
        deadline = time.monotonic() + self.args.drain_timeout
        have = 0
        while time.monotonic() < deadline and not self.stop.is_set():
            have = self.receiver.count() - self._seen
            if have >= expected:
                break
            time.sleep(0.1)
        time.sleep(self.args.settle)  # a duplicate would come now, if any
        phase.callbacks = self.receiver.dump(after_seq)
        phase.cpu_after = self.cpu()
        phase.drained_at = time.monotonic()
        self._seen += len(phase.callbacks)
        if have < expected:
            _say(f"  !! only {have} of {expected} callbacks within {self.args.drain_timeout:g} s")
        return max((c[0] for c in phase.callbacks), default=after_seq)

    def outbox(self) -> dict[str, Any]:
        from sqlalchemy import func, select

        from server.db import beckn as store
        from server.db.session import Database

        db = Database(self.settings.db_url)
        try:
            with db.transaction() as s:
                rows = s.execute(select(store.BecknOutbox.state, func.count(), func.sum(store.BecknOutbox.attempts))
                                 .group_by(store.BecknOutbox.state)).all()
                inbox = s.execute(select(store.BecknInbox.state, func.count()).group_by(store.BecknInbox.state)).all()
        finally:
            db.dispose()
        return {"outbox": {st: {"rows": n, "attempts": int(a or 0)} for st, n, a in rows},
                "inbox": {st: n for st, n in inbox}}

    def run(self) -> None:
        a = self.args
        self.setup()
        self.start_receiver()
        self.start_server()
        self.enroll()
        assert self.receiver is not None
        load = (self.load_class or Load)(lambda: self.make_client(timeout=a.request_timeout), self.order_id, self.order_tx)
        self.warm_up(load)
        if a.ack_only:
            self.stop_server()
            self.start_server(ack_only=True)
            for r in [Sent(i, act, time.monotonic(), message_id=str(uuid.uuid4()))
                      for i, act in enumerate(["search", "status"] * a.warmup)]:
                load.one(r)
        self._seen = self.receiver.count()
        seq = max((c[0] for c in self.receiver.dump(0)), default=0)

        sustained = Phase("sustained")
        sustained.cpu_before = self.cpu()
        _say(f"sustained: {a.rate:g}/s for {a.seconds:g} s ({round(a.rate * a.seconds)} requests, "
             f"{a.search_share:.0%} search), pool {a.pool}")
        run_open_loop(load, sustained, a.rate, a.seconds, a.pool, a.search_share, a.seed, self.stop)
        seq = self.collect(sustained, seq)
        self.result["sustained"] = analyse(sustained, callback_of=self.callback_of)
        self._line("sustained", self.result["sustained"])

        if a.burst > 0 and not self.stop.is_set():
            time.sleep(1.0)
            burst = Phase("burst")
            burst.cpu_before = self.cpu()
            _say(f"burst: {a.burst} requests queued at once on {a.burst_pool} threads")
            run_burst(load, burst, a.burst, a.burst_pool, a.search_share, a.seed + 1)
            seq = self.collect(burst, seq)
            self.result["burst"] = analyse(burst, callback_of=self.callback_of)
            self._line("burst", self.result["burst"])
        self.result["store"] = self.outbox()

    def _line(self, name: str, r: dict[str, Any]) -> None:
        cb = r["callbacks"]
        _say(f"  {name}: {r['acked']}/{r['requests']} ACK, {r['errors']} errors; ACK p50/p99 "
             f"{r['ack_ms_from_due'].get('p50')}/{r['ack_ms_from_due'].get('p99')} ms from due; callbacks "
             f"{cb['matched']} matched, {cb['missing']} missing, {cb['duplicate']} duplicate")

    def cleanup(self) -> None:
        self.stop.set()
        if self.receiver is not None:
            try:
                self.result["receiver_failures"] = None
                self.receiver.close()
            except Exception as exc:  # noqa: BLE001
                _say(f"receiver stop: {exc}")
        if self.server is not None:
            self.stop_server()
            errors = []
            for log in (self.home / "server.log", self.home / "server-ack-only.log"):
                if log.exists():
                    errors += [ln for ln in log.read_text(errors="replace").splitlines()
                               if "Traceback" in ln or " ERROR " in ln or "[ERROR]" in ln]
            self.result["server_log_errors"] = errors[:20]
        if self.pg is not None:
            try:
                self.pg.drop()
            except Exception as exc:  # noqa: BLE001
                _say(f"could not drop {self.pg.name}: {exc}")
        if self.args.keep:
            _say(f"kept {self.home}")
        else:
            shutil.rmtree(self.home, ignore_errors=True)

    # ---------------------------------------------------------------------------- report
    def report(self) -> None:
        r = self.result
        m = r["machine"]
        _say("")
        _say(f"machine: nproc {m['nproc']}, {m['cpu_model']}, {m['memory']}, Python {m['python']}, "
             f"SQLite {m['sqlite']}" + (f", PostgreSQL {m['postgresql']}" if "postgresql" in m else "")
             + f"; load {m['loadavg_start']} -> {m.get('loadavg_end')}")
        _say(f"database: {r['database']}")
        rows = [("phase", "req", "ACK", "err", "offered/s", "ACK/s", "ACK p50", "p90", "p99", "max",
                 "p99 send", "cb/s all", "cb/s steady", "ack→cb p50", "p99", "lost", "dup")]
        for name in ("sustained", "burst"):
            x = r.get(name)
            if not x:
                continue
            d = x["ack_ms_from_due"] if name == "sustained" else x["ack_ms_from_send"]
            rows.append((name, str(x["requests"]), str(x["acked"]), str(x["errors"]), str(x.get("offered_per_s", "-"))
                         if name == "sustained" else "burst", str(x.get("ack_per_s")), str(d.get("p50")),
                         str(d.get("p90")), str(d.get("p99")), str(d.get("max")),
                         str(x["ack_ms_from_send"].get("p99")), str(x.get("callbacks_per_s_overall")),
                         str(x.get("callbacks_per_s_steady", "-")), str(x["ack_to_callback_ms"].get("p50")),
                         str(x["ack_to_callback_ms"].get("p99")), str(x["callbacks"]["missing"]),
                         str(x["callbacks"]["duplicate"])))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for k, row in enumerate(rows):
            _say("  ".join(c.rjust(w) for c, w in zip(row, widths)))
            if k == 0:
                _say("  ".join("-" * w for w in widths))
        _say("(ms; sustained ACK latency from the scheduled send time, burst from the actual send)")
        s = r.get("sustained")
        if s:
            p99 = s["ack_ms_from_due"].get("p99")
            target_rate = self._target_rate()
            behind = s["ack_to_callback_ms"].get("max")
            met = (p99 is not None and p99 <= TARGET_P99_MS and s["errors"] == 0 and s["not_sent"] == 0
                   and self.args.rate >= target_rate and s["callbacks"]["exactly_one_each"]
                   and behind is not None and behind <= TARGET_BEHIND_MS)
            if self.args.ack_only:
                met = False
            verdict = "diagnostic (--ack-only: nothing processed)" if self.args.ack_only else "MET" if met else ("not met" if self.args.rate >= target_rate else f"n/a (rate below {target_rate:g}/s)")
            _say(f"target p99 ACK <= {TARGET_P99_MS:g} ms and every callback <= {TARGET_BEHIND_MS / 1000:g} s "
                 f"behind its ACK at {target_rate:g}/s: {verdict} "
                 f"(p99 {p99} ms at {self.args.rate:g}/s; callbacks behind at most {behind} ms; errors {s['errors']}; "
                 f"every request exactly one callback: {s['callbacks']['exactly_one_each']})")
            r["target_met"] = met if self.args.rate >= target_rate else None
            _say(f"sustained: queue p99 {s['queue_ms'].get('p99')} ms; search p99 "
                 f"{s['ack_ms_from_due_search'].get('p99')} / status p99 {s['ack_ms_from_due_status'].get('p99')} ms; "
                 f"steady cb/s min/max {s.get('callbacks_per_s_steady_min_max')}; last callback "
                 f"{s.get('last_callback_after_last_ack_s')} s after the last ACK; CPU {s.get('cpu_s')} "
                 f"(BPP worker {s.get('bpp_worker_cpu_ms_per_request')} ms/request, "
                 f"{s.get('bpp_worker_cpu_share_of_core')} of a core)")
        b = r.get("burst")
        if b:
            _say(f"burst: {b['ack_per_s']} ACK/s (p50/p99 {b['ack_ms_from_send'].get('p50')}/"
                 f"{b['ack_ms_from_send'].get('p99')} ms); callbacks {b.get('callbacks_per_s_during_acks')}/s "
                 f"while ACKing, backlog {b.get('backlog_at_last_ack')} at the last ACK drained at "
                 f"{b.get('drain_per_s_after_acks')}/s, {b.get('callbacks_per_s_overall')}/s overall; max backlog "
                 f"{b.get('max_backlog')}; CPU {b.get('cpu_s')}")
        if r.get("store"):
            _say(f"store: {r['store']}")
        if r.get("server_log_errors"):
            _say(f"server log errors: {r['server_log_errors'][:3]}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench_beckn.py",
        description="Beckn BPP: ACK latency at a sustained open-loop request rate, callbacks delivered per "
        "second, and a burst; against a real `derflex serve` on 127.0.0.1.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--rate", type=float, default=100.0, help="requests per second (sustained phase)")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the sustained phase")
    p.add_argument("--quick", action="store_true", help="smoke run: 10 s at 50/s and a 300-request burst")
    p.add_argument("--pool", type=int, default=32, help="threads sending the sustained load")
    p.add_argument("--search-share", type=float, default=0.7, help="share of searches (the rest: status)")
    p.add_argument("--burst", type=int, default=2000, help="requests of the burst phase (0: none)")
    p.add_argument("--no-burst", action="store_true", help="skip the burst phase")
    p.add_argument("--burst-pool", type=int, default=32, help="threads sending the burst")
    p.add_argument("--devices", type=int, default=20, help="devices registered before the start")
    p.add_argument("--order-devices", type=int, default=3, help="devices in the enrolled order")
    p.add_argument("--warmup", type=int, default=10, help="unrecorded (search, status) pairs before measuring")
    p.add_argument("--ttl", type=int, default=300, help="ttl of each request (s): callbacks are retried within it")
    p.add_argument("--request-timeout", type=float, default=10.0, help="client timeout of one request (s)")
    p.add_argument("--drain-timeout", type=float, default=120.0, help="most seconds to wait for a phase's callbacks")
    p.add_argument("--settle", type=float, default=2.0, help="seconds to wait after the last callback for duplicates")
    p.add_argument("--seed", type=int, default=2030)
    p.add_argument("--version", choices=("1.1", "2.0"), default="1.1",
                   help="the Beckn version measured: 1.1 (v1.1.0 search/status) or 2.0 (v2.0.0 LTS discover/status "
                        "of a contract, counter-signed Acks; bench/bench_beckn_v2.py)")
    p.add_argument("--postgres", metavar="URL", help="a PostgreSQL server on this machine to create a private "
                   "database on (dropped at the end)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="folder for the JSON results")
    p.add_argument("--keep", action="store_true", help="keep the temporary home (server.log, SQLite database)")
    p.add_argument("--ack-only", action="store_true", help="diagnostic: after the enrollment, swap the server for the "
                   "BPP app alone with its BecknWorker never started (nothing processed, no callbacks): the ACK path's "
                   "own latency, not comparable with a normal run")
    p.add_argument("--_serve-ack-only", dest="serve_ack_only", metavar="HOME", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.quick:
        a.rate, a.seconds, a.burst = 50.0, 10.0, 300
    if a.no_burst:
        a.burst = 0
    if not (0 < a.rate <= 2000 and 1 <= a.seconds <= 3600):
        p.error("--rate must be in (0, 2000] and --seconds in [1, 3600]")
    if not (1 <= a.pool <= 256 and 1 <= a.burst_pool <= 256 and 0 <= a.burst <= 100_000):
        p.error("--pool and --burst-pool must be 1..256, --burst 0..100000")
    if not 0.0 <= a.search_share <= 1.0:
        p.error("--search-share must be within 0..1")
    if a.devices < 1 or a.order_devices < 1:
        p.error("--devices and --order-devices must be at least 1")
    return a


def serve_ack_only(home: Path) -> int:
    """The BPP's gunicorn (server.serve.BecknServer) without its BecknWorker: requests are received,
    stored and ACKed, never processed. Only for --ack-only; the product always runs the worker."""
    from server.config import from_env
    from server.serve import BecknServer

    class AckOnly(BecknServer):  # type: ignore[misc]
        def load_config(self) -> None:
            super().load_config()
            self.cfg.set("post_worker_init", lambda _worker: None)
            self.cfg.set("worker_exit", lambda _server, _worker: None)

    sys.argv = sys.argv[:1]  # gunicorn must not read the bench's options
    AckOnly(from_env(os.environ, home=home)).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--_serve-ack-only":
        return serve_ack_only(Path(sys.argv[2]))
    args = parse_args(argv)
    if args.version == "2.0":
        from bench_beckn_v2 import V2Bench
        bench: Bench = V2Bench(args)
    else:
        bench = Bench(args)
    t0 = time.monotonic()
    interrupted = False
    try:
        bench.run()
    except KeyboardInterrupt:
        interrupted = True
        _say("interrupted: stopping the server and the receiver")
    finally:
        bench.cleanup()
    if interrupted:
        return 130
    bench.result["total_seconds"] = round(time.monotonic() - t0, 1)
    bench.result["bench_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    bench.result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    bench.report()
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out / f"beckn-{stamp}.json"
    out.write_text(json.dumps(bench.result, indent=2, default=str))
    _say(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

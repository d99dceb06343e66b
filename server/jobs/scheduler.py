"""The flexibility scheduler: APScheduler, its job store in the application database, run by
exactly one elected process.

Every process that may schedule (each `derflex serve` worker, or `derflex scheduler`) starts a
`FlexScheduler`; a small thread keeps trying to lead (server.db.leader). The leader runs
APScheduler with:

* `reconcile`, every `reconcile_seconds`: plans the windows of the coming days (one row each),
  gives every planned window a date job at its publishing time, and runs whatever is due now —
  late windows that have not ended are published, ended ones recorded as missed, published ones
  whose inputs changed cleared again (programs.publishing decides; the services execute);
* `publish:<program>:<window>` date jobs, so a window is published on time and not up to a
  reconcile period late;
* `settle`, every `settle_seconds` (default: the reconcile period), a job of its own on an
  executor of its own and outside the lock the publishing jobs take: the settlement pass
  (server.services.flex.settlement.run_due) — windows that ended at least their program's delay
  ago are measured and settled, recent settlements are re-checked for late readings (a changed
  input makes a recorded new version). A pass may take a while at fleet size (measuring 10,000
  devices); the windows due to publish meanwhile are published on time. Exactly once per window
  and version, across processes, is the settlement service's own guarantee (its short write
  re-checks the window's revision and current version), not this scheduler's.

Whoever must hear of a publish or a settlement (the Beckn BAPs, …) hears through the outbox: the
services record the facts in their own transactions, and the outbox drainer (server.jobs.outbox)
hands them on. The scheduler tells nobody itself.

The publishing jobs only call `server.services.flex.publishing`, whose every step is idempotent and one
transaction, so a job run twice, or a leader that died mid-publish, publishes nothing twice. When
leadership is lost the scheduler stops at once; the new leader's first reconcile picks up.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from server.db.leader import LEASE_SECONDS, Leadership
from server.db.session import Database, make_engine
from server.services.flex import settlement, publishing, windows

log = logging.getLogger("derflex.scheduler")

# The schedulers running in this process, by database URL: how a job (stored as a text reference
# and plain arguments) finds the database when it runs.
_RUNNING: dict[str, "FlexScheduler"] = {}


def reconcile_job(url: str) -> None:
    sched = _RUNNING.get(url)
    if sched is not None:
        sched.reconcile(settle=False)  # the settle job settles, on its own executor


def settle_job(url: str) -> None:
    sched = _RUNNING.get(url)
    if sched is not None:
        sched.settle()


def publish_job(url: str, program_id: int, window_key: str) -> None:
    sched = _RUNNING.get(url)
    if sched is not None:
        sched.publish(program_id, window_key)


class FlexScheduler:
    """One process's candidate scheduler. `start()` / `stop()`; `reconcile()` (publish, then
    settle) and `settle()` may also be called directly (the CLI does, for one pass without a
    thread)."""

    def __init__(self, db: Database, *, holder: str | None = None, clock: Callable[[], float] = time.time,
                 reconcile_seconds: float = 30.0, horizon_days: int = 7,
                 lease_seconds: float = LEASE_SECONDS, name: str = "scheduler",
                 settle_seconds: float | None = None):
        self.db = db
        self.clock = clock
        self.reconcile_seconds = reconcile_seconds
        self.settle_seconds = settle_seconds if settle_seconds is not None else reconcile_seconds
        self.horizon_s = horizon_days * 86_400
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.leadership = Leadership(db.engine, name, self.holder, lease_seconds=lease_seconds, clock=clock)
        self._renew_every = max(0.2, lease_seconds / 3)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._aps: Any = None
        self._lock = threading.Lock()  # publishing: one window at a time
        self._settle_lock = threading.Lock()  # settling: one pass at a time, beside publishing
        self.outcomes: list[dict[str, Any]] = []  # what this process published (most recent last)

    # ------------------------------------------------------------------------- lifecycle
    @property
    def leading(self) -> bool:
        return self._aps is not None

    def start(self) -> None:
        if self._thread is not None:
            return
        _RUNNING[self.db.url] = self
        self._stop.clear()
        self._thread = threading.Thread(target=self._elect, name="derflex-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._step_down(wait=True)  # a job in progress finishes (one transaction) before we go
        self.leadership.release()
        if _RUNNING.get(self.db.url) is self:
            del _RUNNING[self.db.url]

    def _elect(self) -> None:
        while not self._stop.is_set():
            try:
                if self.leadership.acquire():
                    if self._aps is None:
                        self._lead()
                elif self._aps is not None:
                    log.warning("scheduler: leadership lost, stopping")
                    self._step_down()
            except Exception:  # never let the election thread die: log and try again
                log.exception("scheduler: election step failed")
                self._step_down()
            self._stop.wait(self._renew_every)

    def _lead(self) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        # The job store gets an engine of its own: APScheduler disposes it on shutdown, and
        # disposing the application's engine would orphan connections other threads hold.
        self._store_engine = make_engine(self.db.url)
        aps = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self._store_engine, tablename="apscheduler_jobs")},
            # one publish at a time, in order; settlement beside it on its own thread
            executors={"default": ThreadPoolExecutor(1), "settlement": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=timezone.utc,
        )
        aps.start()
        aps.add_job(
            "server.jobs.scheduler:reconcile_job", "interval", args=[self.db.url], id="reconcile",
            seconds=self.reconcile_seconds, next_run_time=datetime.now(timezone.utc), replace_existing=True,
        )
        aps.add_job(
            "server.jobs.scheduler:settle_job", "interval", args=[self.db.url], id="settle",
            executor="settlement", seconds=self.settle_seconds, next_run_time=datetime.now(timezone.utc),
            replace_existing=True,
        )
        self._aps = aps
        log.info("scheduler: leading as %s", self.holder)

    def _step_down(self, wait: bool = False) -> None:
        aps, self._aps = self._aps, None
        if aps is not None:
            try:
                aps.shutdown(wait=wait)
                # its loop may query once more after the store's own dispose(): close that too
                self._store_engine.dispose()
            except Exception:  # already stopped
                log.debug("scheduler: shutdown", exc_info=True)

    # ------------------------------------------------------------------------------ jobs
    def reconcile(self, *, settle: bool = True) -> list[dict[str, Any]]:
        """Plan windows, schedule their publishing, and run what is due; then (`settle`) the
        settlement pass. Returns the outcomes."""
        with self._lock:
            now = int(self.clock())
            with self.db.transaction() as s:
                planned = windows.plan_windows(s, now, self.horizon_s)
            aps = self._aps
            if aps is not None:
                for pid, key, publish_at in planned:
                    if publish_at > now:
                        aps.add_job(
                            "server.jobs.scheduler:publish_job", "date", args=[self.db.url, pid, key],
                            id=f"publish:{pid}:{key}", run_date=datetime.fromtimestamp(publish_at, timezone.utc),
                            replace_existing=True,
                        )
            with self.db.transaction() as s:
                due = windows.due_windows(s, now)
            outcomes = [o for pid, key in due if (o := self._run(pid, key)) is not None]
        return outcomes + self.settle() if settle else outcomes

    def settle(self) -> list[dict[str, Any]]:
        """Measure and settle the windows that ended (after their delay), re-check recent ones.
        Takes the settlement lock only: publishing goes on meanwhile."""
        with self._settle_lock:
            try:
                settled = settlement.run_due(self.db, int(self.clock()))
            except Exception:
                log.exception("scheduler: settlement pass failed; it will be retried")
                return []
        for outcome in settled:
            log.info("scheduler: %s", outcome["summary"])
            self.outcomes.append(outcome)
            del self.outcomes[:-100]
        return settled

    def publish(self, program_id: int, window_key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._run(program_id, window_key)

    def _run(self, program_id: int, window_key: str) -> dict[str, Any] | None:
        try:
            outcome = publishing.run_window(self.db, program_id, window_key, int(self.clock()))
        except Exception:
            log.exception("scheduler: window %s of program %s failed; it will be retried", window_key, program_id)
            return None
        if outcome is not None:
            log.info("scheduler: %s", outcome.get("summary", outcome))
            self.outcomes.append(outcome)
            del self.outcomes[:-100]
        return outcome

"""The outbox drainer: hands the facts services record (server.services.outbox) to their
consumers, in a background thread of a server process.

It runs wherever `derflex serve` runs the Beckn worker (a thread beside it on SQLite, in the
worker's own process on PostgreSQL) or, with the BPP switched off, beside each 2030.5 worker's
scheduler, and in `derflex scheduler`; any number may
run against one database — each delivery is claimed for a lease, PostgreSQL's SKIP LOCKED lets them
share the work. Consumers are wired here by name (`consumers_for`): `beckn`
(server.services.bpp.pushes) and `notifications` (server.services.sep2.notify, which queues
2030.5 notifications that server.jobs.notify sends). A new consumer plugs in the same way: a
route in server.services.outbox.ROUTES and an object here.

Read from the environment when a drainer is made (not at import):
  DERFLEX_OUTBOX_RETRY_SECONDS   the waits after each failed attempt, comma-separated (default
                                 "10,100,300,1800"); after the last the delivery is dead. Their sum
                                 is also how long a Beckn push is retried before it is dead.
  DERFLEX_TEST_ONLY_OUTBOX_CRASH TEST-ONLY fault injection, off unless set:
                                 "before-delivery": the process kills itself (SIGKILL) when it finds
                                 a delivery due, before claiming it; "after-act": after a consumer
                                 acted, before its transaction commits. "POINT:CONSUMER" (e.g.
                                 "before-delivery:beckn") only for that consumer's deliveries.
                                 Never set it in production.
Facts older than server.services.outbox.RETENTION_S that every consumer has are pruned hourly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from server.jobs.loop import BackgroundLoop
from server.jobs.notify import Notifier, sending_for
from server.config import ConfigError, Settings
from server.db.session import Database
from server.services import outbox
from server.services.bpp.actions import Provider
from server.services.bpp.catalog_publish import CatalogPublisher
from server.services.bpp.pushes import BecknPushes
from server.services.sep2.notify import Notifications

log = logging.getLogger("derflex.outbox")

RETRY_ENV = "DERFLEX_OUTBOX_RETRY_SECONDS"
CRASH_ENV = "DERFLEX_TEST_ONLY_OUTBOX_CRASH"
CRASH_POINTS = ("before-delivery", "after-act")
PRUNE_EVERY_S = 3600.0


def schedule_from(environ: Mapping[str, str]) -> tuple[float, ...]:
    raw = environ.get(RETRY_ENV, "").strip()
    if not raw:
        return outbox.DEFAULT_SCHEDULE
    try:
        waits = tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(f"{RETRY_ENV} must be seconds separated by commas, e.g. 10,100,300,1800; not {raw!r}") from None
    if not waits or not all(0 < w <= 86_400 for w in waits):
        raise ConfigError(f"{RETRY_ENV}: every wait must be more than 0 and at most 86400 seconds")
    return waits


def crash_point_from(environ: Mapping[str, str]) -> str | None:
    """The crash point (with its consumer, "POINT:CONSUMER", if one is named), or None."""
    raw = environ.get(CRASH_ENV, "").strip()
    if not raw:
        return None
    if raw.partition(":")[0] not in CRASH_POINTS:
        raise ConfigError(f"{CRASH_ENV} must be one of {', '.join(CRASH_POINTS)}")
    return raw


def consumers_for(settings: Settings, schedule: Sequence[float]) -> list[outbox.Consumer]:
    """The consumers this deployment runs, by name: `beckn` always — with the BPP switched off it
    still takes its facts (there are no orders to tell, or their pushes wait in beckn_outbox for
    the BPP's worker), so they never pile up undelivered —, `notifications` (2030.5
    subscribers; server.jobs.notify sends what it queues) and `catalog` (Beckn v2 catalog/publish
    to DERFLEX_BECKN_CATALOG_URL when one is set and the BPP runs; else it takes its facts and
    queues nothing)."""
    provider = Provider.of(settings)
    catalog_url = settings.beckn_catalog_url if settings.beckn_bind else ""
    return [BecknPushes(provider, retry_for_s=sum(schedule)), Notifications(settings.poll_rate),
            CatalogPublisher(provider, catalog_url=catalog_url, retry_for_s=sum(schedule))]


def drainer_for(settings: Settings, db: Database, *, on_delivered: Callable[[], None] | None = None,
                environ: Mapping[str, str] | None = None, tls: Any = None) -> OutboxDrainer | None:
    """A drainer for this deployment's consumers (None when it has none), not started. With `tls`
    (the server's cert, key and trust files: server.bootstrap.tls_files) the notifier that sends
    what the `notifications` consumer queues starts and stops with it (server.jobs.notify)."""
    environ = os.environ if environ is None else environ
    schedule = schedule_from(environ)
    consumers = consumers_for(settings, schedule)
    if not consumers:
        return None
    companions = []
    missing = [] if tls is None else [str(p) for p in (tls.cert, tls.key, tls.trust) if not p.exists()]
    if missing:
        log.warning("outbox: 2030.5 notifications are queued but not sent by this process: missing %s",
                    ", ".join(missing))
    elif tls is not None:
        sending = sending_for(settings, tls.cert, tls.key, tls.trust)
        companions.append(Notifier(db, sending, default_poll_rate=settings.poll_rate, schedule=schedule))
    return OutboxDrainer(db, consumers, schedule=schedule, crash=crash_point_from(environ), on_delivered=on_delivered,
                         companions=companions)


class OutboxDrainer(BackgroundLoop):
    """`start()` / `stop()` a polling thread; `run_once()` / `drain()` for one pass or until idle."""

    thread_name = "outbox-drainer"

    def __init__(self, db: Database, consumers: Sequence[outbox.Consumer], *,
                 schedule: Sequence[float] = outbox.DEFAULT_SCHEDULE, lease_s: float = outbox.LEASE_S,
                 clock: Callable[[], float] = time.time, poll_s: float = 0.2, batch: int = 100,
                 crash: str | None = None, on_delivered: Callable[[], None] | None = None,
                 retention_s: float = outbox.RETENTION_S, companions: Sequence[BackgroundLoop] = ()):
        names = [c.name for c in consumers]
        unknown = sorted(set(names) - set(outbox.CONSUMERS))
        if unknown or len(set(names)) != len(names):
            raise ValueError(f"consumers must be distinct and routed in server.services.outbox.ROUTES: {names}")
        if crash is not None and crash.partition(":")[0] not in CRASH_POINTS:
            raise ValueError(f"crash must be one of {CRASH_POINTS}")
        self.db, self.clock, self.poll_s, self.batch = db, clock, poll_s, batch
        self.consumers = {c.name: c for c in consumers}
        self.schedule, self.lease_s, self.crash = tuple(schedule), lease_s, crash
        self.on_delivered = on_delivered  # e.g. wake the Beckn worker: a push was queued
        self.retention_s = retention_s
        self._next_prune = 0.0
        self.companions = tuple(companions)  # loops that live and die with this one (the notifier)
        # On SQLite the hand-overs take turns with the notifier's marks (server.jobs.notify.Notifier.write_turn)
        turns = [c.write_turn for c in self.companions if getattr(c, "write_turn", None) is not None]
        self.write_turn: Any = turns[0] if turns and db.url.startswith("sqlite") else contextlib.nullcontext()
        super().__init__()

    # ------------------------------------------------------------------------- lifecycle
    def _started(self) -> None:
        log.info("outbox: draining for %s", ", ".join(sorted(self.consumers)))
        for loop in self.companions:
            loop.start()

    def _stopped(self) -> None:
        for loop in self.companions:
            loop.stop()

    # ------------------------------------------------------------------------------ work
    def run_once(self) -> int:
        """Claim what is due (at most `batch`) and hand it over, each consumer's claims together in
        one transaction (server.services.outbox.hand_over_many); how many it took."""
        now = self.clock()
        point, _, only = (self.crash or "").partition(":")
        if point == "before-delivery" and outbox.due(self.db, [only] if only else self.consumers, now):
            self._die("a delivery is due")
        claims = outbox.claim(self.db, self.consumers, now, self.batch, lease_s=self.lease_s, schedule=self.schedule)
        by_consumer: dict[str, list[outbox.Claim]] = {}
        for held in claims:
            by_consumer.setdefault(held.consumer, []).append(held)
        delivered = 0
        for name, held_ones in by_consumer.items():
            after_act = ((lambda: self._die("the consumer acted"))
                         if point == "after-act" and only in ("", name) else None)
            if self._stop.is_set():
                break  # the claims lapse after their lease and another pass takes them
            try:
                with self.write_turn:
                    results = outbox.hand_over_many(self.db, held_ones, self.consumers[name], self.clock(),
                                                    schedule=self.schedule, after_act=after_act)
            except Exception:  # the transaction itself failed: the claims lapse and they are tried again
                log.exception("outbox: handing %s deliveries to %s failed", len(held_ones), name)
                continue
            for held, result in zip(held_ones, results):
                if result.state == "delivered":
                    delivered += 1
                elif result.state == "dead":
                    log.error("outbox: delivery %s to %s is dead after %s attempts: %s", held.delivery_id,
                              held.consumer, held.attempt, result.error)
                elif result.state == "pending":
                    log.warning("outbox: delivery %s to %s failed (attempt %s), retried later: %s",
                                held.delivery_id, held.consumer, held.attempt, result.error)
        if delivered:
            if self.on_delivered is not None:
                self.on_delivered()
            for loop in self.companions:
                loop.wake()  # e.g. the notifier: notifications were queued
        return len(claims)

    def drain(self, max_passes: int = 1000) -> int:
        """Pass after pass until nothing is due now; how many deliveries were taken in all."""
        total = 0
        for _ in range(max_passes):
            n = self.run_once()
            total += n
            if n == 0:
                break
        return total

    def _prune(self) -> None:
        now = self.clock()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY_S
        gone = outbox.prune(self.db, now - self.retention_s)
        if gone:
            log.info("outbox: pruned %s facts older than %s days", gone, round(self.retention_s / 86_400, 1))

    def _die(self, why: str) -> None:
        log.error("outbox: %s=%s: %s; killing this process (pid %s) with SIGKILL", CRASH_ENV, self.crash, why,
                  os.getpid())
        for handler in logging.getLogger().handlers + log.handlers:
            handler.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = 0
            try:
                busy = self.run_once()
                self._prune()
            except Exception:  # never let the drainer die: log and try again
                log.exception("outbox: drainer pass failed")
            if not busy:
                self._wake.wait(self.poll_s)
                self._wake.clear()

"""The transactional outbox: facts written in the transaction that made them true, handed to each
consumer at least once, and never acted on twice.

Facts are small frozen dataclasses (below). The service that changes something records the fact in
the same transaction (`record`; one fact per device control in bulk with `record_controls` from
lists, or `record_controls_from` a query, which publishing uses), so a fact exists exactly when
its change was committed: no "after commit" hook can be skipped by a crash, and a rolled-back
change leaves no fact.

What is per fact, what per consumer:
  * per fact (`outbox_facts`): what happened — kind, a readable key, the fields as JSON, when.
    Written once, never changed.
  * per (fact, consumer) (`outbox_deliveries`): whether that consumer has acted on it — state
    (pending → delivered | dead), attempts, when to try next, who holds it now (a lease), the last
    error, and the idempotency key. Consumers fail and recover independently: a BAP that is down
    must not hold back another consumer, and a dead letter names the one consumer that gave up.
  * `ROUTES` says which consumers hear which kind; a delivery row is written beside the fact for
    each, in the same transaction. Kinds nobody consumes yet (controls, enrollments) are recorded
    all the same, for the consumers to come (2030.5 notifications). A route added later does not
    reach facts recorded before it.

Handing over (`claim`, then `hand_over` for each claim, or `hand_over_many` for a consumer's
claims together; server.jobs.outbox runs them):
  * `claim` takes due deliveries for a lease (PostgreSQL: FOR UPDATE SKIP LOCKED, so several
    drainers share the work; SQLite serialises writers) and counts the attempt.
  * `hand_over` runs the consumer in ONE transaction that first re-locks the delivery and checks the
    claim still holds, then lets the consumer act (a database write: queue a callback, a
    notification…), writes the consumer's receipts, and marks the delivery delivered. A crash
    anywhere rolls the action back with the mark; a drainer whose lease ran out finds the claim gone
    and acts not at all. So delivery is at least once, and the action happens once.
  * Consumers act inside the transaction only. Work that leaves the process (HTTP) belongs to the
    consumer's own sender, fed by what it queued (the Beckn consumer queues into beckn_outbox, which
    the Beckn worker sends). A receipt (`note_effect`) names what the action produced, unique across
    consumers: a second action for the same idempotency key fails on it, and a later failure of the
    product (`effect_failed`: a callback the BAP never took) makes the delivery a dead letter.
  * A consumer that raises is retried on the schedule (10 s, 100 s, 300 s, 30 min by default), then
    the delivery is dead. A process that dies mid-hand-over leaves the claim to expire; its attempt
    counted, so a fact that kills its drainer every time ends dead too.
  * `replay` gives a dead letter a new idempotency key and makes it due now.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Protocol

from sqlalchemy import Select, String, cast, delete, literal, select
from sqlalchemy.orm import Session

from server.db import outbox as store
from server.db import sub as sub_store
from server.db.session import Database
from server.services import clock
from server.services.errors import Conflict, Invalid, NotFound, check_text

# --------------------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class WindowPublished:
    """A window's controls were published (revision 1) or published again (revision n > 1)."""

    kind: ClassVar[str] = "window.published"
    program_id: int
    window_key: str
    revision: int
    republished: bool = False

    @property
    def key(self) -> str:
        return f"{self.program_id}/{self.window_key}/r{self.revision}"


@dataclass(frozen=True)
class ControlCreated:
    """A DERControl (event) was written for one device of a program."""

    kind: ClassVar[str] = "control.created"
    program_id: int
    device_id: int
    mrid: str

    @property
    def key(self) -> str:
        return self.mrid


CANCEL_REASONS = ("cancelled", "superseded")


@dataclass(frozen=True)
class ControlCancelled:
    """A device's control no longer stands: "cancelled" (the event was cancelled: a window or program
    cancelled, the device left, or a re-clearing has nothing to replace it) or "superseded" (a newer
    revision's control for the same device and interval replaces it from its start)."""

    kind: ClassVar[str] = "control.cancelled"
    program_id: int
    device_id: int
    mrid: str
    reason: str = "cancelled"

    @property
    def key(self) -> str:
        return self.mrid


@dataclass(frozen=True)
class SettlementStored:
    """A settlement version of a window was stored (version 1, or a re-settlement)."""

    kind: ClassVar[str] = "settlement.stored"
    program_id: int
    window_key: str
    run_id: int
    version: int
    reason: str

    @property
    def key(self) -> str:
        return f"{self.program_id}/{self.window_key}/v{self.version}"


@dataclass(frozen=True)
class EnrollmentChanged:
    """An enrollment moved to a new state (programs.enrollment: active, paused, cancelled, ended)."""

    kind: ClassVar[str] = "enrollment.changed"
    program_id: int
    enrollment_id: int
    device_id: int
    state: str

    @property
    def key(self) -> str:
        return f"{self.program_id}/{self.enrollment_id}/{self.state}"


@dataclass(frozen=True)
class ProgramChanged:
    """A flexibility program was authored, changed or cancelled ("authored", "updated",
    "cancelled"): what the BPP's catalog shows changed."""

    kind: ClassVar[str] = "program.changed"
    program_id: int
    version: int
    change: str

    @property
    def key(self) -> str:
        return f"{self.program_id}/v{self.version}"


# 2030.5 resources changed (server.services.sep2 records them; subscribers hear of them).


@dataclass(frozen=True)
class DefaultControlChanged:
    """A DER program's DefaultDERControl was set or changed."""

    kind: ClassVar[str] = "sep2.default-control"
    der_program_id: int

    @property
    def key(self) -> str:
        return str(self.der_program_id)


@dataclass(frozen=True)
class AssignmentsChanged:
    """What these devices' FunctionSetAssignments lead them to changed (an FSA made, changed or
    taken away; a DER program's membership or description changed). No device ids: every device."""

    kind: ClassVar[str] = "sep2.assignments"
    device_ids: tuple[int, ...] = ()

    @property
    def key(self) -> str:
        return ",".join(map(str, self.device_ids[:8])) + ("…" if len(self.device_ids) > 8 else "")


@dataclass(frozen=True)
class DeviceChanged:
    """An EndDevice was registered, changed or removed."""

    kind: ClassVar[str] = "sep2.device"
    device_id: int
    removed: bool = False

    @property
    def key(self) -> str:
        return str(self.device_id)


@dataclass(frozen=True)
class DerDocumentChanged:
    """A device's DER document (dercap, derg, ders, dera) was stored."""

    kind: ClassVar[str] = "sep2.der-document"
    device_id: int
    document: str

    @property
    def key(self) -> str:
        return f"{self.device_id}/{self.document}"


@dataclass(frozen=True)
class PollRateChanged:
    """An operator changed the pollRate served on a family of resources ("edev", "fsa", …)."""

    kind: ClassVar[str] = "sep2.poll-rate"
    resource: str

    @property
    def key(self) -> str:
        return self.resource


Fact = (WindowPublished | ControlCreated | ControlCancelled | SettlementStored | EnrollmentChanged | ProgramChanged
        | DefaultControlChanged | AssignmentsChanged | DeviceChanged | DerDocumentChanged | PollRateChanged)
FACTS: dict[str, type[Any]] = {cls.kind: cls for cls in
                               (WindowPublished, ControlCreated, ControlCancelled, SettlementStored, EnrollmentChanged,
                                ProgramChanged, DefaultControlChanged, AssignmentsChanged, DeviceChanged, DerDocumentChanged,
                                PollRateChanged)}

# ---------------------------------------------------------------------------------- consumers

BECKN = "beckn"  # unsolicited on_status to the BAPs (server.services.bpp.pushes)
NOTIFICATIONS = "notifications"  # 2030.5 notifications to subscribers (server.services.sep2.notify)
CATALOG = "catalog"  # Beckn v2 catalog/publish to a catalog service (server.services.bpp.catalog_publish)

ROUTES: Mapping[str, tuple[str, ...]] = {
    WindowPublished.kind: (BECKN,),
    SettlementStored.kind: (BECKN,),
    ControlCreated.kind: (NOTIFICATIONS,),
    ControlCancelled.kind: (NOTIFICATIONS,),
    EnrollmentChanged.kind: (),
    ProgramChanged.kind: (CATALOG,),
    DefaultControlChanged.kind: (NOTIFICATIONS,),
    AssignmentsChanged.kind: (NOTIFICATIONS,),
    DeviceChanged.kind: (NOTIFICATIONS,),
    DerDocumentChanged.kind: (NOTIFICATIONS,),
    PollRateChanged.kind: (NOTIFICATIONS,),
}
CONSUMERS = tuple(sorted({c for names in ROUTES.values() for c in names}))

DEFAULT_SCHEDULE = (10.0, 100.0, 300.0, 1800.0)  # waits after the 1st, 2nd … failed attempt
LEASE_S = 60.0  # a claim; a hand-over is one short transaction


@dataclass(frozen=True)
class Handoff:
    """One fact handed to one consumer: what it must act on and the key it acts under."""

    delivery_id: int
    consumer: str
    key: str  # the idempotency key: the same for every attempt of this delivery
    fact_id: int
    fact: Fact
    attempt: int


class Consumer(Protocol):
    """What a drainer hands facts to. `deliver` acts in `session` (the transaction that marks the
    delivery) and raises to fail the attempt; it should `note_effect` what it produced."""

    name: str

    def deliver(self, session: Session, handoff: Handoff, now: float) -> None: ...


# ----------------------------------------------------------------------------------- recording


def payload(fact: Fact) -> str:
    return json.dumps(asdict(fact), separators=(",", ":"))


def fact_from(kind: str, text: str) -> Fact:
    cls = FACTS.get(kind)
    if cls is None:
        raise ValueError(f"unknown fact kind {kind!r}")
    data = json.loads(text)
    return cls(**{f.name: tuple(data[f.name]) if isinstance(data[f.name], list) else data[f.name]  # type: ignore[no-any-return]
                  for f in fields(cls) if f.name in data})


def consumers_of(session: Session, kind: str) -> tuple[str, ...]:
    """The consumers a fact of `kind` goes to now: its routes, less the 2030.5 notifications while
    nobody has subscribed to anything (a fact recorded then would change nobody's notifications:
    a later subscriber reads the resource as it is)."""
    routes = ROUTES[kind]
    if NOTIFICATIONS in routes and not sub_store.any_subscription(session):
        return tuple(c for c in routes if c != NOTIFICATIONS)
    return routes


def record(session: Session, fact: Fact, now: float) -> int | None:
    """Write one fact, and a pending delivery to each consumer it goes to; its id. A 2030.5
    resource fact that no consumer wants now is not written (None)."""
    consumers = consumers_of(session, fact.kind)
    if not consumers and fact.kind.startswith("sep2."):
        return None
    (fact_id,) = store.new_fact_ids(session, 1)
    store.insert_facts(session, [(fact_id, fact.kind, fact.key, payload(fact), now)])
    if consumers:
        store.insert_deliveries(session, [fact_id], consumers, now)
    return fact_id


# The payloads of record_controls, written without a dataclass per control (100,000 per publish);
# tests/services/test_outbox.py checks they equal `payload` of the typed fact.
_CONTROL_JSON = {
    ControlCreated.kind: '{"program_id":%d,"device_id":%d,"mrid":"%s"}',
    ControlCancelled.kind: '{"program_id":%d,"device_id":%d,"mrid":"%s","reason":"%s"}',
}


def record_controls(session: Session, fact: type[ControlCreated | ControlCancelled], program_id: int,
                    device_ids: Sequence[int], mrids: Sequence[str], now: float, *, reason: str = "cancelled") -> int:
    """Many control facts of one program at once (one per device control), as if each were
    `record`ed: `fact(program_id, device_ids[i], mrids[i][, reason])`. How many were written."""
    if len(device_ids) != len(mrids):
        raise ValueError("one device id per mRID")
    if not mrids:
        return 0
    if fact is ControlCancelled and reason not in CANCEL_REASONS:
        raise ValueError(f"reason must be one of {CANCEL_REASONS}")
    ids = store.new_fact_ids(session, len(mrids))
    template, kind, pid = _CONTROL_JSON[fact.kind], fact.kind, int(program_id)
    if fact is ControlCreated:
        rows = [(i, kind, m, template % (pid, d, m), now) for i, d, m in zip(ids, device_ids, mrids)]
    else:
        rows = [(i, kind, m, template % (pid, d, m, reason), now) for i, d, m in zip(ids, device_ids, mrids)]
    store.insert_facts(session, rows)
    consumers = consumers_of(session, kind)
    if consumers:
        store.insert_deliveries(session, ids, consumers, now)
    return len(rows)


def record_controls_from(session: Session, fact: type[ControlCreated | ControlCancelled], program_id: int,
                         controls: Select[Any], now: float, *, reason: str = "cancelled") -> int:
    """As `record_controls`, for the (device id, mRID) rows `controls` selects: the database
    writes them in one INSERT … SELECT, so a publish's 100,000 controls never pass through
    Python (half the time of building the rows here). mRIDs must need no JSON escaping (ours are
    hex). How many were written."""
    if fact is ControlCancelled and reason not in CANCEL_REASONS:
        raise ValueError(f"reason must be one of {CANCEL_REASONS}")
    src = controls.subquery()
    device, mrid = list(src.c)[:2]
    tail = '"}' if fact is ControlCreated else f'","reason":"{reason}"}}'
    json_text = (literal(f'{{"program_id":{int(program_id)},"device_id":') + cast(device, String)
                 + literal(',"mrid":"') + mrid + literal(tail))
    rows = select(literal(fact.kind), mrid, json_text, literal(float(now))).select_from(src)
    consumers = consumers_of(session, fact.kind)
    written, ids = store.insert_facts_from(session, rows, returning=bool(consumers))
    if consumers:
        store.insert_deliveries(session, ids, consumers, now)
    return written


# ---------------------------------------------------------------------------------- handing over


@dataclass(frozen=True)
class Claim:
    delivery_id: int
    consumer: str
    attempt: int
    token: float  # claimed_until as this claim set it: the hand-over must still find it


@dataclass(frozen=True)
class Outcome:
    state: str  # delivered | pending (will be retried) | dead | claim lost
    error: str | None = None


INTERRUPTED = "the hand-over was interrupted {n} times (its process stopped before it finished)"


def due(db: Database, consumers: Collection[str], now: float, limit: int = 1) -> list[int]:
    """Ids of deliveries to `consumers` due now (a plain read: an idle drainer takes no write lock)."""
    if limit <= 0 or not consumers:
        return []
    with db.read() as c:
        return list(store.due_ids(c, consumers, now, limit))


def claim(db: Database, consumers: Collection[str], now: float, limit: int, *, lease_s: float = LEASE_S,
          schedule: Sequence[float] = DEFAULT_SCHEDULE) -> list[Claim]:
    """Due deliveries to `consumers`, at most `limit`, each held for `lease_s` seconds. A delivery
    whose every attempt was interrupted by a crash is made dead instead."""
    ids = due(db, consumers, now, limit)  # the common answer is "nothing"
    if not ids:
        return []
    with db.transaction() as s:
        rows = store.claim(s, ids, now, lease_s)
        out = []
        for delivery_id, consumer, attempts, token in rows:
            if attempts > len(schedule) + 1:
                row = s.get(store.OutboxDelivery, delivery_id)
                assert row is not None  # claimed in this transaction
                row.state, row.claimed_until = "dead", 0.0
                row.last_error = INTERRUPTED.format(n=attempts - 1)
                continue
            out.append(Claim(delivery_id, consumer, attempts, token))
        return out


def hand_over(db: Database, held: Claim, consumer: Consumer, now: float, *,
              schedule: Sequence[float] = DEFAULT_SCHEDULE, after_act: Callable[[], None] | None = None) -> Outcome:
    """Let `consumer` act on the claimed delivery and record the outcome, in one transaction
    (module docstring). `after_act` runs between the action and the commit (a test's crash point)."""
    with db.transaction() as s:
        row = store.held(s, held.delivery_id, held.token)
        if row is None:
            return Outcome("claim lost")
        fact_row = s.get(store.OutboxFact, row.fact_id)
        assert fact_row is not None  # a delivery goes with its fact (ON DELETE CASCADE)
        handoff = Handoff(row.id, row.consumer, row.idempotency_key, row.fact_id,
                          fact_from(fact_row.kind, fact_row.payload), row.attempts)
        try:
            with s.begin_nested():
                consumer.deliver(s, handoff, now)
        except Exception as exc:  # the consumer failed: its writes are undone, the attempt recorded
            return _failed(row, exc, schedule, now)
        if after_act is not None:
            after_act()
        row.state, row.claimed_until, row.last_error = "delivered", 0.0, None
        row.delivered_time = row.updated_time = now
        return Outcome("delivered")


def hand_over_many(db: Database, held: Sequence[Claim], consumer: Consumer, now: float, *,
                   schedule: Sequence[float] = DEFAULT_SCHEDULE,
                   after_act: Callable[[], None] | None = None) -> list[Outcome]:
    """`hand_over` for several claims of one consumer in ONE transaction (one commit instead of
    one per fact: on SQLite every transaction is a turn of the single write lock). Per delivery as
    before: its claim is checked (a lost one is left alone), the consumer acts in a savepoint, a
    failure is recorded on that delivery alone and the others go on, and each is marked with the
    action in the same commit. A consumer with `deliver_many(session, handoffs, now)` is given the
    held deliveries together in one savepoint (so it can read and write in bulk); when that raises,
    each is given to `deliver` in a savepoint of its own, so one bad fact fails only itself.
    Outcomes in the order of `held`."""
    if not held:
        return []
    consumer_many = getattr(consumer, "deliver_many", None)
    with db.transaction() as s:
        rows = _held_many(s, held)
        facts = _facts_of(s, [row.fact_id for row in rows.values()])
        live: list[tuple[store.OutboxDelivery, Handoff]] = []
        for c in held:
            row = rows.get(c.delivery_id)
            if row is not None:
                fact_row = facts[row.fact_id]  # a delivery goes with its fact (ON DELETE CASCADE)
                live.append((row, Handoff(row.id, row.consumer, row.idempotency_key, row.fact_id,
                                          fact_from(fact_row.kind, fact_row.payload), row.attempts)))
        outcomes: dict[int, Outcome] = {}
        together = False
        if consumer_many is not None and len(live) > 1:
            try:
                with s.begin_nested():
                    consumer_many(s, [h for _, h in live], now)
                together = True
            except Exception:  # one of them is bad: give each its own savepoint below
                together = False
        for row, handoff in live:
            if not together:
                try:
                    with s.begin_nested():
                        consumer.deliver(s, handoff, now)
                except Exception as exc:  # this consumer's action failed: undone, the attempt recorded
                    outcomes[row.id] = _failed(row, exc, schedule, now)
                    continue
            outcomes[row.id] = Outcome("delivered")
        if after_act is not None:
            after_act()
        for row, _ in live:
            if outcomes[row.id].state == "delivered":
                row.state, row.claimed_until, row.last_error = "delivered", 0.0, None
                row.delivered_time = row.updated_time = now
        return [outcomes.get(c.delivery_id, Outcome("claim lost")) for c in held]


def _held_many(session: Session, held: Sequence[Claim]) -> dict[int, store.OutboxDelivery]:
    """The claimed deliveries, locked (in id order: two drainers never wait on each other in a
    circle), that are still pending under this drainer's claim."""
    d = store.OutboxDelivery
    token = {c.delivery_id: c.token for c in held}
    rows = session.scalars(select(d).where(d.id.in_(sorted(token))).order_by(d.id).with_for_update()
                           .execution_options(populate_existing=True)).all()
    return {r.id: r for r in rows if r.state == "pending" and r.claimed_until == token[r.id]}


def _facts_of(session: Session, fact_ids: Collection[int]) -> dict[int, store.OutboxFact]:
    f = store.OutboxFact
    return {r.id: r for r in session.scalars(select(f).where(f.id.in_(sorted(set(fact_ids)))))}


def _failed(row: store.OutboxDelivery, exc: Exception, schedule: Sequence[float], now: float) -> Outcome:
    error = f"{type(exc).__name__}: {exc}"[:500]
    row.claimed_until, row.last_error, row.updated_time = 0.0, error, now
    if row.attempts <= len(schedule):
        row.next_attempt_at = now + schedule[row.attempts - 1]
    else:
        row.state = "dead"
    return Outcome(row.state, error)


def note_effect(session: Session, handoff: Handoff, ref: str, now: float) -> None:
    """Record what a consumer's action produced (e.g. "beckn:<message_id>"), in its transaction.
    The same reference twice fails the action: nothing is produced twice."""
    session.add(store.OutboxReceipt(ref=ref, delivery_id=handoff.delivery_id, created_time=now))
    session.flush()


def effect_failed(session: Session, ref: str, why: str, now: float) -> bool:
    """What a delivered action produced failed for good (a callback the BAP never took): the
    delivery becomes a dead letter, with the reason. False when `ref` is no receipt of a delivery
    (an ordinary callback) or the delivery has moved on (replayed)."""
    receipt = session.get(store.OutboxReceipt, ref)
    if receipt is None:
        return False
    row = session.get(store.OutboxDelivery, receipt.delivery_id, with_for_update=True)
    if row is None or row.state != "delivered":
        return False
    row.state, row.last_error, row.updated_time = "dead", why[:500], now
    return True


def replay(session: Session, delivery_id: int, now: float) -> dict[str, Any]:
    """A dead letter due again now, under a new idempotency key (so the consumer acts anew)."""
    row = session.get(store.OutboxDelivery, delivery_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no outbox delivery {delivery_id}")
    if row.state != "dead":
        raise Conflict(f"outbox delivery {delivery_id} is {row.state}: only dead letters are replayed")
    _revive(session, row, now)
    fact_row = session.get(store.OutboxFact, row.fact_id)
    assert fact_row is not None
    return delivery_view(row, fact_row)


def replay_dead(session: Session, now: float, *, consumer: str | None = None) -> list[int]:
    """Every dead letter (of one consumer) due again now; their ids."""
    _, page = store.deliveries(session, state="dead", consumer=_consumer(consumer), limit=2**31)
    for row, _fact in page:
        _revive(session, row, now)
    return sorted(row.id for row, _fact in page)


def _revive(session: Session, row: store.OutboxDelivery, now: float) -> None:
    row.replays += 1
    row.idempotency_key = store.idempotency_key(row.consumer, row.fact_id, row.replays)
    row.state, row.attempts, row.next_attempt_at, row.claimed_until = "pending", 0, now, 0.0
    row.updated_time = now
    # what the dead generation produced is no longer this delivery's: its late failures count for nothing
    session.execute(delete(store.OutboxReceipt).where(store.OutboxReceipt.delivery_id == row.id))


RETENTION_S = 14 * 86_400  # facts older than this are pruned once every consumer has them


def prune(db: Database, before: float, *, batch: int = 10_000) -> int:
    """Delete facts recorded before `before` whose deliveries are all delivered (with those
    deliveries and receipts); facts still pending or dead for someone stay. How many went."""
    with db.transaction() as s:
        bound = store.prune_bound(s, before)
    gone = 0
    while bound is not None:
        with db.transaction() as s:
            n = store.prune(s, bound, before, batch)
        gone += n
        if n < batch:
            break
    return gone


# --------------------------------------------------------------------------------------- views

MAX_PAGE = 1000


def _consumer(name: str | None) -> str | None:
    return check_text(name, "consumer", 64) or None


def _state(state: str | None) -> str | None:
    if state in (None, ""):
        return None
    if state not in store.STATES:
        raise Invalid(f"state must be one of {', '.join(store.STATES)}, not {str(state)[:20]!r}")
    return state


def delivery_view(row: store.OutboxDelivery, fact: store.OutboxFact) -> dict[str, Any]:
    return {
        "id": row.id,
        "consumer": row.consumer,
        "state": row.state,
        "attempts": row.attempts,
        "next_attempt": clock.iso(row.next_attempt_at) if row.state == "pending" else None,
        "last_error": row.last_error,
        "idempotency_key": row.idempotency_key,
        "replays": row.replays,
        "updated": clock.iso(row.updated_time),
        "delivered": clock.iso(row.delivered_time),
        "fact": {"id": fact.id, "kind": fact.kind, "key": fact.key, "payload": json.loads(fact.payload),
                 "created": clock.iso(fact.created_time)},
    }


def list_deliveries(session: Session, *, state: str | None = None, consumer: str | None = None,
                    start: int = 0, limit: int = 100) -> dict[str, Any]:
    """A page of deliveries (newest first) with their facts, filtered by state and consumer."""
    total, page = store.deliveries(session, state=_state(state), consumer=_consumer(consumer),
                                   start=max(0, start), limit=max(0, min(limit, MAX_PAGE)))
    return {"all": total, "deliveries": [delivery_view(row, fact) for row, fact in page]}


def stats(session: Session) -> dict[str, Any]:
    """Per consumer: pending (of which retrying: failed before), delivered (of which retried:
    needed more than one attempt), dead."""
    out: dict[str, dict[str, int]] = {}
    for consumer, state, tried, n in store.counts(session):
        c = out.setdefault(consumer, {"pending": 0, "retrying": 0, "delivered": 0, "retried": 0, "dead": 0})
        c[state] = c.get(state, 0) + n
        if state == "pending" and tried >= 1:
            c["retrying"] += n
        if state == "delivered" and tried >= 2:
            c["retried"] += n
    return {"consumers": [{"consumer": name, **out[name]} for name in sorted(out)]}

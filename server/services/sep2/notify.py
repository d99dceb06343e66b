"""2030.5 notifications: which subscriptions a change concerns, and the documents queued for them.

Two sources, both writing queued notifications (server.db.sub.Notification) in the transaction
that decides them:
  * the outbox consumer `Notifications` (named server.services.outbox.NOTIFICATIONS): a fact
    (a control created or cancelled, a default control, FSAs or memberships, an EndDevice, a DER
    document, a pollRate changed) → the subscriptions it concerns → one notification each;
  * `scan_events`, run by the notifier on a clock: events that began, or left their lists after
    their end, since the last scan → the DERControlList / ActiveDERControlList subscriptions of the
    devices they apply to. A status that changes by time is a change of the list too.

What a notification carries: the subscribed resource as the subscriber would GET it at that moment
(a list: its first `limit` entries), inside a Notification with status 0 and the resource's
xsi:type — what conformance harnesses expect (a whole DERControlList, not a lone DERControl).
A resource deleted (its EndDevice removed) gets status 4 and no resource, and ends the
subscription. A subscriber that can no longer read the resource (moved out of its scope) gets
nothing. Consecutive identical documents for one subscription are sent once: an event created
already active is not announced again when the clock passes its start.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db import repo
from server.db import fsa as fsa_store
from server.db import sub as store
from server.db.derp import DerEvent, ProgramMember
from server.scope import Role, Scope
from server.sep2 import events
from server.sep2.der import DERAvailability, DERCapability, DERSettings, DERStatus
from server.sep2.paging import Page
from server.sep2.sub import STATUS_DEFAULT
from server.services import outbox
from server.services.errors import NotFound, ServiceError
from server.services.sep2 import der, derp, edev, fsa, notices

CURSOR = "events"
MAX_CATCH_UP_S = 86_400  # after a long outage, transitions older than this are not announced late
DER_DOCUMENTS = {"dercap": DERCapability, "derg": DERSettings, "ders": DERStatus, "dera": DERAvailability}
POLL_RATE_TARGETS = {"edev": "edev_list", "fsa": "fsa_list", "derp": "derp_list"}


def scope_of(db: repo.Reader, sub: Any) -> Scope:
    """The subscriber as it is now (an aggregator only while an operator names it one)."""
    role = Role.AGGREGATOR if repo.is_aggregator(db, sub.subscriber_lfdi) else Role.DEVICE
    return Scope(role, sub.subscriber_lfdi)


def resource_of(db: repo.Reader, sub: Any, now: int, poll_rates: dict[str, int], default_rate: int, *,
                scope: Scope | None = None) -> Any:
    """The subscribed resource as the subscriber (`scope`, found when not given) would read it
    now; NotFound when it cannot."""
    scope = scope_of(db, sub) if scope is None else scope
    d, page = sub.target_device_id, Page(0, sub.limit)

    def rate(name: str) -> int:
        return poll_rates.get(name, default_rate)

    kind = sub.target
    if kind == "edev":
        return edev.end_device(db, scope, d)
    if kind == "edev_list":
        return edev.end_device_list(db, scope, page, rate("edev"))
    if kind == "fsa_list":
        return fsa.fsa_list(db, scope, d, page, rate("fsa"))
    if kind == "derp_list":
        return derp.der_program_list(db, scope, d, sub.fsa_id, page, rate("derp"))
    if kind in ("derc_list", "actderc"):
        return derp.control_list(db, scope, d, sub.program_id, page, now, active_only=kind == "actderc").model
    if kind == "dderc":
        return derp.default_control(db, scope, d, sub.program_id)
    if kind == "der_doc":
        return der.document(db, scope, d, der.DER_ID, DER_DOCUMENTS[sub.der_doc])
    raise NotFound(f"unknown subscription target {kind}")


def queue_for(session: Session, subs: Iterable[Any], key: str, now: float, *, default_rate: int) -> int:
    """Render and queue one notification per subscription under `key`; how many were queued."""
    return queue_keyed(session, [(sub, key) for sub in subs], now, default_rate=default_rate)


def queue_keyed(session: Session, keyed: Iterable[tuple[Any, str]], now: float, *, default_rate: int) -> int:
    """Render and queue one notification per (subscription, key) — a subscription named twice
    gets one, under its first key — unless it would repeat the subscription's last document. What
    does not depend on the subscription is read once: the poll rates, each subscriber's scope, and
    each resource as one scope reads it (subscriptions of one subscriber to the same resource with
    the same limit share it). How many were queued."""
    todo: dict[int, tuple[Any, str]] = {}
    for sub, key in keyed:
        todo.setdefault(sub.id, (sub, key))
    if not todo:
        return 0
    reader = session.connection()  # the same transaction, without the ORM's cost per query
    rates = repo.poll_rates(reader)
    scopes: dict[str, Scope] = {}
    resources: dict[tuple[Any, ...], Any] = {}
    last = store.last_bodies(session, list(todo))
    rows: list[dict[str, Any]] = []
    for sub, key in todo.values():
        scope = scopes.get(sub.subscriber_lfdi)
        if scope is None:
            scope = scopes[sub.subscriber_lfdi] = scope_of(reader, sub)
        shared = (scope, sub.target, sub.target_device_id, sub.program_id, sub.fsa_id, sub.der_doc, sub.limit)
        resource = resources.get(shared)
        if resource is None:
            try:
                resource = resources[shared] = resource_of(reader, sub, int(now), rates, default_rate, scope=scope)
            except ServiceError:  # out of the subscriber's sight now: it hears nothing of it
                resource = resources[shared] = _UNSEEN
        if resource is _UNSEEN:
            continue
        body = notices.document(sub, STATUS_DEFAULT, resource)
        if body == last.get(sub.id):
            continue
        rows.append(notices.row(sub, key, body, now))
    return store.queue(session, rows)


_UNSEEN = object()


# ------------------------------------------------------------------------- facts → subscriptions


def _members(session: Session, program_id: int, device_ids: Sequence[int]) -> set[int]:
    found: set[int] = set()
    ids = list(dict.fromkeys(device_ids))
    for i in range(0, len(ids), 500):
        found.update(session.scalars(select(ProgramMember.device_id).where(
            ProgramMember.program_id == program_id, ProgramMember.device_id.in_(ids[i:i + 500]))))
    return found


def event_subscriptions(session: Session, program_id: int, device_id: int | None) -> list[Any]:
    """DERControlList / ActiveDERControlList subscriptions that an event of `program_id` for
    `device_id` (None: every member) shows in."""
    if device_id is not None:
        return list(store.of_program_devices(session, EVENT_LISTS, [(program_id, device_id)]))
    subs = store.of_program(session, EVENT_LISTS, program_id)
    members = _members(session, program_id, [s.target_device_id for s in subs])
    members |= fsa_store.fsa_follower_ids(session, program_id)  # led to it by an operator's FSA
    return [s for s in subs if s.target_device_id in members]


EVENT_LISTS = ("derc_list", "actderc")


def _visible_to_subscriber(session: Session, subs: Sequence[Any], device_id: int) -> list[Any]:
    return [s for s in subs if repo.device_row(session, scope_of(session, s), device_id) is not None]


def concerned(session: Session, fact: Any) -> list[Any]:
    """The subscriptions a fact changes the resource of."""
    if isinstance(fact, (outbox.ControlCreated, outbox.ControlCancelled)):
        row = session.scalars(select(DerEvent).where(DerEvent.mrid == fact.mrid)).first()
        return [] if row is None else event_subscriptions(session, row.program_id, row.device_id)
    if isinstance(fact, outbox.DefaultControlChanged):
        # (a DERProgram links its DefaultDERControl from the start, set or not: nothing else changes)
        return list(store.of_program(session, ("dderc",), fact.der_program_id))
    if isinstance(fact, outbox.AssignmentsChanged):
        if not fact.device_ids:
            return list(store.of_targets(session, ("fsa_list", "derp_list")))
        return [*store.matching(session, "fsa_list", fact.device_ids),
                *store.matching(session, "derp_list", fact.device_ids)]
    if isinstance(fact, outbox.DeviceChanged):
        lists = _visible_to_subscriber(session, store.of_targets(session, ("edev_list",)), fact.device_id)
        return [*store.matching(session, "edev", [fact.device_id]), *lists]
    if isinstance(fact, outbox.DerDocumentChanged):
        return list(store.matching(session, "der_doc", [fact.device_id], der_doc=fact.document))
    if isinstance(fact, outbox.PollRateChanged):
        target = POLL_RATE_TARGETS.get(fact.resource)
        return [] if target is None else list(store.of_targets(session, (target,)))
    return []


def concerned_each(session: Session, facts: Sequence[Any]) -> list[list[Any]]:
    """`concerned` for each of several facts, the control facts (a publish makes thousands) with
    one query for their events and one for the subscriptions of the (program, device) pairs."""
    controls = [f for f in facts if isinstance(f, (outbox.ControlCreated, outbox.ControlCancelled))]
    events_by_mrid: dict[str, Any] = {}
    mrids = sorted({f.mrid for f in controls})
    for i in range(0, len(mrids), 500):
        events_by_mrid.update((r.mrid, r) for r in session.execute(
            select(DerEvent.mrid, DerEvent.program_id, DerEvent.device_id).where(DerEvent.mrid.in_(mrids[i:i + 500]))))
    pairs = {(e.program_id, e.device_id) for e in events_by_mrid.values() if e.device_id is not None}
    by_pair: dict[tuple[int, int], list[Any]] = {}
    for s in store.of_program_devices(session, EVENT_LISTS, sorted(pairs)):
        by_pair.setdefault((s.program_id, s.target_device_id), []).append(s)
    wide: dict[int, list[Any]] = {}
    out: list[list[Any]] = []
    for fact in facts:
        if not isinstance(fact, (outbox.ControlCreated, outbox.ControlCancelled)):
            out.append(concerned(session, fact))
            continue
        event = events_by_mrid.get(fact.mrid)
        if event is None:
            out.append([])
        elif event.device_id is not None:
            out.append(by_pair.get((event.program_id, event.device_id), []))
        else:
            if event.program_id not in wide:
                wide[event.program_id] = event_subscriptions(session, event.program_id, None)
            out.append(wide[event.program_id])
    return out


class Notifications:
    """The outbox consumer: a fact in, the notifications it calls for queued (same transaction)."""

    name = outbox.NOTIFICATIONS

    def __init__(self, default_poll_rate: int):
        self.default_poll_rate = default_poll_rate

    def deliver(self, session: Session, handoff: outbox.Handoff, now: float) -> None:
        subs = concerned(session, handoff.fact)
        queue_for(session, subs, f"f{handoff.fact_id}", now, default_rate=self.default_poll_rate)

    def deliver_many(self, session: Session, handoffs: Sequence[outbox.Handoff], now: float) -> None:
        """Several facts at once (server.services.outbox.hand_over_many): each concerned
        subscription gets one notification, the resource as it is now, under the key of the last
        fact that concerns it (changes handed over together give one notification, as when they
        are handed over one by one)."""
        keyed: list[tuple[Any, str]] = []
        for handoff, subs in zip(handoffs, concerned_each(session, [h.fact for h in handoffs])):
            keyed.extend((sub, f"f{handoff.fact_id}") for sub in subs)
        last: dict[int, tuple[Any, str]] = {}
        for sub, key in keyed:
            last[sub.id] = (sub, key)
        queue_keyed(session, last.values(), now, default_rate=self.default_poll_rate)


# ------------------------------------------------------------------------------ the clock's part


def _transitions(session: Session, since: float, now: float) -> list[tuple[str, Any]]:
    """(key, event) of events that started in (since, now], or left their lists (end + grace)."""
    grace = events.LIST_GRACE_SECONDS
    ev = DerEvent
    started = session.scalars(select(ev).where(ev.start > since, ev.start <= now, ev.cancelled_at.is_(None))
                              .order_by(ev.start, ev.id)).all()
    ended = session.scalars(select(ev).where(ev.start + ev.duration > since - grace,
                                             ev.start + ev.duration <= now - grace)
                            .order_by(ev.start + ev.duration, ev.id)).all()
    return [(f"start:{e.mrid}", e) for e in started] + [(f"end:{e.mrid}", e) for e in ended]


def scan_events(db: Any, now: float, *, default_rate: int) -> int:
    """Queue what events reaching their start or leaving their lists since the last scan call for,
    and advance the cursor, in one transaction; how many notifications were queued. Run by one
    process at a time (the notifier's leader). On SQLite the write lock is taken only by the
    first queued row: rendering happens before."""
    queued = 0
    with db.transaction() as s:
        cur = store.cursor(s, CURSOR, now)
        since = max(cur.at, now - MAX_CATCH_UP_S)
        if now <= since:
            return 0
        for key, event in _transitions(s, since, now):
            subs = event_subscriptions(s, event.program_id, event.device_id)
            if subs:
                queued += queue_for(s, subs, key, now, default_rate=default_rate)
        cur.at = now
    return queued

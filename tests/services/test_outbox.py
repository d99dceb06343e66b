"""The transactional outbox (server.services.outbox, the drainer in server.jobs.outbox, the Beckn
consumer in server.services.bpp.pushes), on SQLite and PostgreSQL: facts exist exactly when their
change committed; each is handed to its consumer at least once and acted on once — through a real
SIGKILLed drainer process, a lease that ran out, failures retried on the schedule — and what never
gets through ends as a dead letter an operator lists and replays.

Timeline as tests/services/test_beckn_actions.py: Monday 2026-11-30, window 16:00–18:00 New York,
published an hour before the start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, literal, select, union_all

from server.beckn.signing import SigningKey
from server.cli import main as derflex
from server.config import ConfigError
from server.db import derp as der_store
from server.db import flex as store
from server.db import outbox as outbox_store
from server.db.beckn import BecknOutbox
from server.jobs.outbox import OutboxDrainer, crash_point_from, schedule_from
from server.services import outbox
from server.services.bpp import pipeline
from server.services.bpp.pushes import BecknPushes, push_message_id
from server.services.errors import Conflict, Invalid, NotFound
from server.services.flex import enrollments, publishing, windows
from tests.services.test_beckn_actions import (  # noqa: F401 - fixtures
    CURVE,
    KEY,
    PROVIDER,
    PUBLISH_AT,
    _order,
    bpp,
    device,
    schema,
    world,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = float(PUBLISH_AT)


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Ledger:
    """A stand-in consumer for the mechanics (named `beckn`, as the drainer wires consumers by
    name): its action is one receipt per hand-over, written in the hand-over's transaction; it
    fails while `failures` lasts."""

    name = outbox.BECKN

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.acted: list[str] = []

    def deliver(self, session, handoff: outbox.Handoff, now: float) -> None:  # noqa: ANN001
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the consumer's side is down")
        outbox.note_effect(session, handoff, f"ledger:{handoff.key}", now)
        self.acted.append(handoff.key)


def _confirm(bpp, world, names: list[str]) -> str:  # noqa: ANN001
    bpp.transaction_id = str(uuid.uuid4())
    bpp("init", _order(world, [device(n, curve=CURVE) for n in names]))
    return bpp("confirm", _order(world, [device(n, curve=CURVE) for n in names]))["order"]["id"]


def facts(database, kind: str | None = None) -> list[tuple[str, str, dict]]:  # noqa: ANN001
    with database.transaction() as s:
        f = outbox_store.OutboxFact
        rows = s.execute(select(f.kind, f.key, f.payload).where(f.kind == kind if kind else True).order_by(f.id))
        return [(k, key, json.loads(p)) for k, key, p in rows]


def deliveries(database) -> list[outbox_store.OutboxDelivery]:  # noqa: ANN001
    """Every delivery but the `catalog` consumer's (the fixtures' programs were authored: their
    ProgramChanged facts go there; tests/services/test_catalog_publish.py covers them)."""
    d = outbox_store.OutboxDelivery
    with database.transaction() as s:
        return list(s.scalars(select(d).where(d.consumer != outbox.CATALOG).order_by(d.id)))


def receipts(database) -> list[str]:  # noqa: ANN001
    with database.transaction() as s:
        return sorted(s.scalars(select(outbox_store.OutboxReceipt.ref)))


def pushes(database) -> list[BecknOutbox]:  # noqa: ANN001
    """The unsolicited on_status callbacks queued (not answers to a request)."""
    with database.transaction() as s:
        return list(s.scalars(select(BecknOutbox).where(BecknOutbox.action == "on_status",
                                                        BecknOutbox.inbox_id.is_(None)).order_by(BecknOutbox.id)))


def beckn_drainer(database, clock, *, retry_for_s: float = 60.0, **kw) -> OutboxDrainer:  # noqa: ANN001
    return OutboxDrainer(database, [BecknPushes(PROVIDER, retry_for_s=retry_for_s)], clock=clock, **kw)


def record_window_fact(database, now: float = T0) -> int:  # noqa: ANN001
    with database.transaction() as s:
        return outbox.record(s, outbox.WindowPublished(1, KEY, 1), now)


# --------------------------------------------------------------------------------------- facts


def test_facts_are_written_with_their_change_and_only_routed_kinds_get_deliveries(world, bpp, database) -> None:  # noqa: ANN001
    _confirm(bpp, world, ["battery-0", "battery-1"])
    peak = world["peak"]
    with database.transaction() as s:
        enrolled = {e.device_id: e.id for e in store.enrollments(s, peak)}
    assert sorted((p["device_id"], p["enrollment_id"], p["state"]) for _k, _key, p in facts(database, "enrollment.changed")) \
        == sorted((d, e, "active") for d, e in enrolled.items())
    assert deliveries(database) == []  # nobody consumes enrollment facts yet

    publishing.run_window(database, peak, KEY, PUBLISH_AT)
    [(kind, key, payload)] = facts(database, "window.published")
    assert (key, payload) == (f"{peak}/{KEY}/r1",
                              {"program_id": peak, "window_key": KEY, "revision": 1, "republished": False})
    with database.transaction() as s:
        ev = der_store.DerEvent
        events = set(s.execute(select(ev.device_id, ev.mrid).where(ev.program_id == world["peak_der"])))
    assert len(events) == 4  # 2 batteries × 2 intervals
    created = facts(database, "control.created")
    assert {(p["device_id"], p["mrid"]) for _k, _key, p in created} == events
    assert all(p["program_id"] == peak and key == p["mrid"] for _k, key, p in created)
    [d] = deliveries(database)  # the window fact, to the one consumer of its kind
    with database.transaction() as s:
        window_fact = s.scalar(select(outbox_store.OutboxFact.id).where(outbox_store.OutboxFact.kind == kind))
    assert (d.fact_id, d.consumer, d.state, d.attempts, d.next_attempt_at) == (window_fact, "beckn", "pending", 0, PUBLISH_AT)
    assert d.idempotency_key == f"beckn:{window_fact}"

    before = len(facts(database))
    with pytest.raises(RuntimeError), database.transaction() as s:  # a change rolled back leaves no fact
        outbox.record(s, outbox.WindowPublished(peak, KEY, 9), PUBLISH_AT)
        raise RuntimeError("the change failed")
    assert len(facts(database)) == before and len(deliveries(database)) == 1


def test_a_leaving_device_a_republish_and_a_cancelled_window_tell_which_controls_went(world, bpp, database) -> None:  # noqa: ANN001
    _confirm(bpp, world, ["battery-0", "battery-1", "battery-2"])
    peak, devs = world["peak"], world["devices"]
    publishing.run_window(database, peak, KEY, PUBLISH_AT)
    first = {p["mrid"]: p["device_id"] for _k, _key, p in facts(database, "control.created")}
    with database.transaction() as s:
        leaving = store.enrollment_of(s, peak, devs["battery-2"]).id
        enrollments.enrollment_event(s, peak, leaving, "cancel", PUBLISH_AT + 10)
    gone = {p["mrid"]: (p["device_id"], p["reason"]) for _k, _key, p in facts(database, "control.cancelled")}
    assert gone == {m: (devs["battery-2"], "cancelled") for m, d in first.items() if d == devs["battery-2"]}
    assert ("enrollment.changed", f"{peak}/{leaving}/cancelled") in {(k, key) for k, key, _p in facts(database)}

    out = publishing.run_window(database, peak, KEY, PUBLISH_AT + 20)  # the two that stay clear again
    assert out["action"] == "republish" and out["revision"] == 2
    assert facts(database, "window.published")[-1][2] == {"program_id": peak, "window_key": KEY, "revision": 2,
                                                          "republished": True}
    superseded = {p["mrid"] for _k, _key, p in facts(database, "control.cancelled") if p["reason"] == "superseded"}
    assert superseded == {m for m, d in first.items() if d != devs["battery-2"]}  # same modes and times: replaced
    second = {p["mrid"] for _k, _key, p in facts(database, "control.created")} - set(first)
    assert len(second) == 4

    with database.transaction() as s:
        windows.cancel_window(s, peak, KEY, PUBLISH_AT + 30)
    cancelled_now = {p["mrid"] for _k, _key, p in facts(database, "control.cancelled")
                     if p["reason"] == "cancelled" and p["device_id"] != devs["battery-2"]}
    assert cancelled_now == second
    with database.transaction() as s:  # exactly the events the database cancelled
        ev = der_store.DerEvent
        assert set(s.scalars(select(ev.mrid).where(ev.cancelled_at == PUBLISH_AT + 30))) == second


def test_bulk_control_facts_read_back_as_the_typed_facts(database) -> None:  # noqa: ANN001
    mrids = [f"{i:032X}" for i in range(1, 6)]
    with database.transaction() as s:
        assert outbox.record_controls(s, outbox.ControlCreated, 7, [11, 12, 13, 14, 15], mrids, T0) == 5
        outbox.record_controls(s, outbox.ControlCancelled, 7, [11, 12], mrids[:2], T0, reason="superseded")
        assert outbox.record_controls(s, outbox.ControlCreated, 7, [], [], T0) == 0
        with pytest.raises(ValueError):
            outbox.record_controls(s, outbox.ControlCancelled, 7, [11], mrids[:1], T0, reason="lost")
        with pytest.raises(ValueError):
            outbox.record_controls(s, outbox.ControlCreated, 7, [11, 12], mrids[:1], T0)
        rows = s.execute(select(outbox_store.OutboxFact).order_by(outbox_store.OutboxFact.id)).scalars().all()
    expected = [outbox.ControlCreated(7, 10 + i, m) for i, m in enumerate(mrids, 1)] + \
               [outbox.ControlCancelled(7, 10 + i, m, "superseded") for i, m in enumerate(mrids[:2], 1)]
    assert [(r.kind, r.key, r.payload) for r in rows] == [(f.kind, f.key, outbox.payload(f)) for f in expected]
    assert [outbox.fact_from(r.kind, r.payload) for r in rows] == expected
    assert len({r.id for r in rows}) == 7 and deliveries(database) == []
    pairs = union_all(*(select(literal(d).label("device_id"), literal(m).label("mrid"))
                        for d, m in ((21, mrids[2]), (22, mrids[3])))).subquery()
    with database.transaction() as s:  # the database writes the same facts from a query
        assert outbox.record_controls_from(s, outbox.ControlCreated, 8, select(pairs.c.device_id, pairs.c.mrid), T0) == 2
        outbox.record_controls_from(s, outbox.ControlCancelled, 8, select(pairs.c.device_id, pairs.c.mrid), T0,
                                    reason="superseded")
        with pytest.raises(ValueError):
            outbox.record_controls_from(s, outbox.ControlCancelled, 8, select(pairs.c.device_id, pairs.c.mrid), T0,
                                        reason="lost")
        queried = s.execute(select(outbox_store.OutboxFact).where(outbox_store.OutboxFact.id > rows[-1].id)
                            .order_by(outbox_store.OutboxFact.id)).scalars().all()
    expected = [outbox.ControlCreated(8, 21, mrids[2]), outbox.ControlCreated(8, 22, mrids[3]),
                outbox.ControlCancelled(8, 21, mrids[2], "superseded"), outbox.ControlCancelled(8, 22, mrids[3], "superseded")]
    assert [(r.kind, r.key, r.payload, r.created_time) for r in queried] == [
        (f.kind, f.key, outbox.payload(f), T0) for f in expected]
    odd = outbox.WindowPublished(7, 'tab\there, newline\nthere, back\\slash "quoted"', 2)
    with database.transaction() as s:  # what COPY's text format must escape comes back as it went
        fid = outbox.record(s, odd, T0)
    with database.transaction() as s:
        row = s.get(outbox_store.OutboxFact, fid)
        assert (row.key, outbox.fact_from(row.kind, row.payload)) == (odd.key, odd)


def test_a_consumer_routed_to_controls_gets_a_delivery_per_control_in_bulk(database, monkeypatch) -> None:  # noqa: ANN001
    """What a 2030.5 notification consumer will need: a route for the control facts, and one
    delivery per control from both bulk paths, each with its own key."""
    monkeypatch.setitem(outbox.ROUTES, outbox.ControlCreated.kind, (outbox.BECKN,))  # (the only consumer name today)
    pairs = union_all(*(select(literal(d).label("device_id"), literal(m).label("mrid"))
                        for d, m in ((31, "C" * 32), (32, "D" * 32)))).subquery()
    with database.transaction() as s:
        outbox.record_controls(s, outbox.ControlCreated, 9, [11, 12, 13], ["A" * 32, "B" * 32, "E" * 32], T0)
        assert outbox.record_controls_from(s, outbox.ControlCreated, 9, select(pairs.c.device_id, pairs.c.mrid), T0) == 2
        keys = dict(s.execute(select(outbox_store.OutboxFact.id, outbox_store.OutboxFact.key)).all())
    got = deliveries(database)
    assert sorted(keys[d.fact_id] for d in got) == ["A" * 32, "B" * 32, "C" * 32, "D" * 32, "E" * 32]
    assert {d.idempotency_key for d in got} == {f"beckn:{fid}" for fid in keys}
    assert all((d.state, d.next_attempt_at) == ("pending", T0) for d in got)


# ------------------------------------------------------------------------------ the Beckn consumer


def test_the_beckn_consumer_queues_one_on_status_per_active_order_and_nothing_twice(world, bpp, database) -> None:  # noqa: ANN001
    first = _confirm(bpp, world, ["battery-0"])
    second = _confirm(bpp, world, ["battery-1"])
    publishing.run_window(database, world["peak"], KEY, PUBLISH_AT)
    clock = Clock(T0 + 1)
    assert beckn_drainer(database, clock, retry_for_s=120).drain() == 1
    [d] = deliveries(database)
    assert (d.state, d.attempts, d.delivered_time) == ("delivered", 1, T0 + 1)
    queued = pushes(database)
    assert sorted(json.loads(p.body)["message"]["order"]["id"] for p in queued) == sorted([first, second])
    assert {p.message_id for p in queued} == {push_message_id(d.idempotency_key, o) for o in (first, second)}
    assert all(p.deadline == T0 + 1 + 120 and p.state == "pending" for p in queued)
    assert receipts(database) == sorted(pipeline.push_ref(p.message_id) for p in queued)
    clock.t += 3600
    assert beckn_drainer(database, clock).drain() == 0 and len(pushes(database)) == 2
    with database.transaction() as s:
        beckn_stats = [c for c in outbox.stats(s)["consumers"] if c["consumer"] == "beckn"]
        assert beckn_stats == [{"consumer": "beckn", "pending": 0, "retrying": 0, "delivered": 1, "retried": 0, "dead": 0}]


_DRAIN_IN_A_PROCESS = """
import sys
from server.db.session import Database
from server.jobs.outbox import OutboxDrainer
from server.services.bpp.pushes import BecknPushes
from tests.services.test_beckn_actions import PROVIDER
db = Database(sys.argv[1])
now = float(sys.argv[2])
OutboxDrainer(db, [BecknPushes(PROVIDER, retry_for_s=60)], clock=lambda: now, lease_s=30, crash=sys.argv[3]).run_once()
print("survived", flush=True)
"""


@pytest.mark.parametrize("crash", ["before-delivery", "after-act"])
def test_a_drainer_killed_mid_delivery_leaves_the_fact_to_be_acted_on_exactly_once(world, bpp, database,  # noqa: ANN001
                                                                                   crash: str) -> None:
    """A real process SIGKILLs itself (DERFLEX_TEST_ONLY_OUTBOX_CRASH's points): before claiming,
    or after the consumer queued its on_status and before the commit. Nothing of the action
    survives the kill; the next drainer acts once."""
    order = _confirm(bpp, world, ["battery-0"])
    publishing.run_window(database, world["peak"], KEY, PUBLISH_AT)
    proc = subprocess.run([sys.executable, "-c", _DRAIN_IN_A_PROCESS, database.url, str(T0 + 1), crash],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert "survived" not in proc.stdout
    assert pushes(database) == [] and receipts(database) == []
    [d] = deliveries(database)
    if crash == "after-act":  # it had claimed: the claim holds until its lease runs out
        assert (d.state, d.attempts, d.claimed_until) == ("pending", 1, T0 + 1 + 30)
        assert beckn_drainer(database, Clock(T0 + 2)).drain() == 0 and pushes(database) == []
        clock = Clock(T0 + 1 + 31)
    else:
        assert (d.state, d.attempts, d.claimed_until) == ("pending", 0, 0.0)
        clock = Clock(T0 + 2)
    assert beckn_drainer(database, clock).drain() == 1
    [p] = pushes(database)
    assert json.loads(p.body)["message"]["order"]["id"] == order
    [d] = deliveries(database)
    assert d.state == "delivered" and d.attempts == (2 if crash == "after-act" else 1)
    assert beckn_drainer(database, Clock(clock.t + 3600)).drain() == 0 and len(pushes(database)) == 1


def test_a_drainer_whose_lease_ran_out_acts_not_at_all(database) -> None:  # noqa: ANN001
    record_window_fact(database)
    slow, quick = Ledger(), Ledger()
    [a] = outbox.claim(database, [outbox.BECKN], T0, 10, lease_s=5)
    [b] = outbox.claim(database, [outbox.BECKN], T0 + 6, 10, lease_s=5)  # a's lease has run out
    assert (a.attempt, b.attempt) == (1, 2)
    assert outbox.hand_over(database, a, slow, T0 + 7).state == "claim lost"  # b holds it now
    assert outbox.hand_over(database, b, quick, T0 + 7).state == "delivered"
    assert outbox.hand_over(database, a, slow, T0 + 8).state == "claim lost"
    assert (slow.acted, len(quick.acted)) == ([], 1)
    assert receipts(database) == [f"ledger:beckn:{deliveries(database)[0].fact_id}"]


def test_the_same_receipt_twice_fails_the_action(database) -> None:  # noqa: ANN001
    fact_id = record_window_fact(database)
    [d] = deliveries(database)
    handoff = outbox.Handoff(d.id, d.consumer, d.idempotency_key, fact_id, outbox.WindowPublished(1, KEY, 1), 1)
    with database.transaction() as s:
        outbox.note_effect(s, handoff, "beckn:m-1", T0)
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), database.transaction() as s:
        outbox.note_effect(s, handoff, "beckn:m-1", T0)
    assert receipts(database) == ["beckn:m-1"]


# ---------------------------------------------------------------------------- retries and dead letters


def test_failures_are_retried_on_the_schedule_then_dead_and_a_replay_acts_anew(database) -> None:  # noqa: ANN001
    fact_id = record_window_fact(database)
    failing, clock = Ledger(failures=99), Clock(T0)
    drainer = OutboxDrainer(database, [failing], clock=clock)
    waits = []
    for _attempt in range(5):
        assert drainer.drain() == 1
        [d] = deliveries(database)
        assert d.last_error == "RuntimeError: the consumer's side is down"
        if d.state == "dead":
            break
        waits.append(d.next_attempt_at - clock.t)
        clock.t = d.next_attempt_at - 1
        assert drainer.drain() == 0  # not before its time
        clock.t += 1
    assert waits == list(outbox.DEFAULT_SCHEDULE)  # 10 s, 100 s, 300 s, 30 min, then dead
    assert (d.state, d.attempts, failing.acted) == ("dead", 5, [])
    clock.t += 86_400
    assert drainer.drain() == 0  # dead stays dead
    with database.transaction() as s:
        assert outbox.stats(s)["consumers"] == [{"consumer": "beckn", "pending": 0, "retrying": 0, "delivered": 0,
                                                 "retried": 0, "dead": 1}]
        [dead] = outbox.list_deliveries(s, state="dead")["deliveries"]
        assert (dead["fact"]["kind"], dead["fact"]["key"], dead["attempts"]) == ("window.published", f"1/{KEY}/r1", 5)
        assert outbox.list_deliveries(s, state="delivered") == {"all": 0, "deliveries": []}
        with pytest.raises(Invalid):
            outbox.list_deliveries(s, state="lost")
        with pytest.raises(NotFound):
            outbox.replay(s, d.id + 1, clock.t)
        view = outbox.replay(s, d.id, clock.t)
    assert (view["state"], view["attempts"], view["idempotency_key"]) == ("pending", 0, f"beckn:{fact_id}:r1")
    working = Ledger()
    assert OutboxDrainer(database, [working], clock=clock).drain() == 1
    assert working.acted == [f"beckn:{fact_id}:r1"]  # a new key: the consumer acts anew
    [d] = deliveries(database)
    assert (d.state, d.attempts, d.replays, d.last_error) == ("delivered", 1, 1, None)
    with database.transaction() as s, pytest.raises(Conflict):
        outbox.replay(s, d.id, clock.t)


def test_a_delivery_whose_drainer_dies_every_time_ends_dead(database) -> None:  # noqa: ANN001
    record_window_fact(database)
    t = T0
    for n in range(1, 6):  # claimed, then the process dies before the hand-over: the lease runs out
        [c] = outbox.claim(database, [outbox.BECKN], t, 10, lease_s=5)
        assert c.attempt == n
        t += 6
    assert outbox.claim(database, [outbox.BECKN], t, 10, lease_s=5) == []
    [d] = deliveries(database)
    assert d.state == "dead" and d.last_error == outbox.INTERRUPTED.format(n=5)


def test_a_push_the_bap_never_takes_is_a_dead_letter_and_its_replay_is_delivered(world, bpp, database) -> None:  # noqa: ANN001
    """The two retry layers end in one place: the callback is retried (1, 2, 4 … s) until the
    schedule's time is up, then the fact's delivery is dead, with the BAP's answer."""
    order = _confirm(bpp, world, ["battery-0"])
    publishing.run_window(database, world["peak"], KEY, PUBLISH_AT)
    clock = Clock(T0 + 1)
    assert beckn_drainer(database, clock, retry_for_s=4).drain() == 1
    key = SigningKey(PROVIDER.bpp_id, "k1", Ed25519PrivateKey.generate())
    answers: list[tuple[int, bytes]] = []

    def bap(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        answers.append((500, json.loads(body)["context"]["message_id"]))
        return 500, b"down"

    states = []
    for _ in range(10):
        for delivery in pipeline.claim_due(database, clock.t):
            states.append(pipeline.deliver_once(database, delivery, key, bap, clock))
        if deliveries(database)[0].state == "dead":
            break
        clock.t += 1
    [d] = deliveries(database)
    [first] = pushes(database)
    assert first.state == "expired" and states[-1] == "expired" and len(answers) >= 2
    assert d.state == "dead" and d.last_error.startswith("on_status to https://bap.example.org/beckn/on_status "
                                                          "not taken before its deadline: HTTP 500")
    with database.transaction() as s:
        [listed] = outbox.list_deliveries(s, state="dead", consumer="beckn")["deliveries"]
        assert listed["id"] == d.id and "HTTP 500" in listed["last_error"]
        outbox.replay(s, d.id, clock.t)
    assert beckn_drainer(database, clock, retry_for_s=4).drain() == 1
    first, second = pushes(database)
    assert second.message_id != first.message_id and json.loads(second.body)["message"]["order"]["id"] == order

    def bap_back(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        answers.append((200, json.loads(body)["context"]["message_id"]))
        return 200, json.dumps({"message": {"ack": {"status": "ACK"}}}).encode()

    [delivery] = pipeline.claim_due(database, clock.t)
    assert pipeline.deliver_once(database, delivery, key, bap_back, clock) == "delivered"
    assert [m for status, m in answers if status == 200] == [second.message_id]
    assert deliveries(database)[0].state == "delivered"
    clock.t += 3600  # the first generation's callback is long gone: it cannot kill the replay
    assert pipeline.claim_due(database, clock.t) == [] and deliveries(database)[0].state == "delivered"


# ---------------------------------------------------------------------------------- housekeeping


def test_old_facts_go_once_every_consumer_has_them(database) -> None:  # noqa: ANN001
    with database.transaction() as s:
        outbox.record_controls(s, outbox.ControlCreated, 1, [1, 2], ["A" * 32, "B" * 32], 0)
        done = outbox.record(s, outbox.WindowPublished(1, "2026-01-01", 1), 0)
        dead = outbox.record(s, outbox.WindowPublished(1, "2026-01-02", 1), 0)
        waiting = outbox.record(s, outbox.WindowPublished(1, "2026-01-03", 1), 0)
        young = outbox.record(s, outbox.WindowPublished(1, "2026-01-04", 1), 100)
        for row in s.scalars(select(outbox_store.OutboxDelivery)):
            row.state = {done: "delivered", dead: "dead"}.get(row.fact_id, row.state)
    assert outbox.prune(database, 50, batch=1) == 3  # the controls and the delivered window; in batches
    with database.transaction() as s:
        left = set(s.scalars(select(outbox_store.OutboxFact.id)))
        assert left == {dead, waiting, young}
        assert s.scalar(select(func.count()).select_from(outbox_store.OutboxDelivery)) == 3
    with database.transaction() as s:
        for row in s.scalars(select(outbox_store.OutboxDelivery)):
            row.state = "delivered"
    assert outbox.prune(database, 1000) == 2  # everything is old now, but the newest fact stays
    assert [k for k, key, _p in facts(database)] == ["window.published"] and facts(database)[0][1].endswith("2026-01-04/r1")


def test_the_schedule_and_the_crash_point_come_from_the_environment() -> None:
    assert schedule_from({}) == outbox.DEFAULT_SCHEDULE
    assert schedule_from({"DERFLEX_OUTBOX_RETRY_SECONDS": "1, 2.5"}) == (1.0, 2.5)
    for bad in ("soon", "0", "1,,2", "-1", "90000"):
        with pytest.raises(ConfigError):
            schedule_from({"DERFLEX_OUTBOX_RETRY_SECONDS": bad})
    assert crash_point_from({}) is None
    assert crash_point_from({"DERFLEX_TEST_ONLY_OUTBOX_CRASH": "after-act"}) == "after-act"
    with pytest.raises(ConfigError):
        crash_point_from({"DERFLEX_TEST_ONLY_OUTBOX_CRASH": "sometimes"})


def test_a_drainer_takes_only_consumers_the_routes_name(database) -> None:  # noqa: ANN001
    class Stranger(Ledger):
        name = "nobody-routes-to-me"

    with pytest.raises(ValueError):
        OutboxDrainer(database, [Stranger()])
    with pytest.raises(ValueError):
        OutboxDrainer(database, [Ledger(), Ledger()])


def test_the_operator_lists_counts_and_replays_from_the_command_line(database) -> None:  # noqa: ANN001
    record_window_fact(database)
    OutboxDrainer(database, [Ledger(failures=99)], clock=Clock(T0), schedule=(1.0,)).drain()
    OutboxDrainer(database, [Ledger(failures=99)], clock=Clock(T0 + 1), schedule=(1.0,)).drain()
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(derflex, ["--database-url", database.url, "outbox", *args])
        assert result.exit_code == 0, result.output
        return result.output

    [d] = deliveries(database)
    assert d.state == "dead"
    listed = cli("list", "--state", "dead")
    assert f"{d.id:>8}  beckn    dead" in listed and "RuntimeError: the consumer's side is down" in listed
    assert json.loads(cli("list", "--state", "dead", "--json"))["deliveries"][0]["id"] == d.id
    assert json.loads(cli("stats", "--json"))["consumers"][0]["dead"] == 1
    assert "beckn" in cli("stats")
    out = cli("replay", str(d.id))
    assert f"delivery {d.id} to beckn" in out and "is due again" in out
    assert deliveries(database)[0].state == "pending"
    assert cli("replay", "--all-dead").startswith("0 dead letter(s)")
    bad = runner.invoke(derflex, ["--database-url", database.url, "outbox", "replay", str(d.id)])
    assert bad.exit_code == 1 and "only dead letters are replayed" in bad.output
    assert runner.invoke(derflex, ["--database-url", database.url, "outbox", "replay"]).exit_code == 2


@pytest.mark.parametrize("beckn_bind", ["127.0.0.1:8081", ""])
def test_the_beckn_consumer_runs_whether_or_not_the_bpp_listens(database, tmp_path: Path, beckn_bind: str) -> None:  # noqa: ANN001
    """Every fact routed to `beckn` gets a delivery row; with the BPP switched off a drainer still
    takes them (nothing to tell, or pushes that wait for the BPP's worker), so none piles up
    pending for ever."""
    from server.config import Settings
    from server.jobs.outbox import drainer_for

    settings = Settings(home=tmp_path, database_url=database.url, beckn_bind=beckn_bind)
    drainer = drainer_for(settings, database, environ={})
    assert drainer is not None and list(drainer.consumers) == ["beckn", "notifications", "catalog"]
    with database.transaction() as s:
        outbox.record(s, outbox.WindowPublished(program_id=1, window_key="2026-11-30", revision=1), 0)
    assert drainer.drain() == 1
    with database.transaction() as s:
        assert s.scalars(select(outbox_store.OutboxDelivery.state)).all() == ["delivered"]

"""server.jobs.scheduler: windows published at their lead time by APScheduler with its jobs in
the application database, run by exactly one elected scheduler, handed over when it goes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text

from server.db import flex as store
from server.jobs.scheduler import FlexScheduler
from server.services.flex import programs as flex
from tests.services.test_publish import KEY, PUBLISH_AT, START, events, world  # noqa: F401  (fixture)


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _wait(predicate, seconds: float = 20.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_reconcile_plans_publishes_what_is_due_and_nothing_twice(world, database) -> None:  # noqa: ANN001, F811
    clock = Clock(PUBLISH_AT - 600)
    sched = FlexScheduler(database, clock=clock)
    assert sched.reconcile() == []
    with database.transaction() as s:
        assert store.window(s, world["program"], KEY).state == "planned"
    clock.t = PUBLISH_AT
    (out,) = sched.reconcile()
    assert out["action"] == "publish" and out["window"] == KEY
    assert sched.reconcile() == []
    assert len(events(database, world["der_program"])) == 6


def test_a_leader_stores_its_jobs_in_the_database_and_publishes_on_time(database) -> None:  # noqa: ANN001
    """A real APScheduler date job fires at the window's publishing time (a few seconds away)."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start = now + timedelta(seconds=90)
    spec = {"name": "Soon", "currency": "USD", "requested_kw": 1.0, "price_cap": 0.5,
            "window": {"weekdays": list(range(7)), "start": start.strftime("%H:%M:%S"),
                       "end": (start + timedelta(minutes=10)).strftime("%H:%M:%S"), "tz": "UTC"},
            "incentive": {"kind": "pay_as_clear"}, "eligible_kinds": ["battery"], "lead_time_s": 86}
    with database.transaction() as s:
        program = flex.create_program(s, spec, int(now.timestamp()))
    sched = FlexScheduler(database, reconcile_seconds=3600, lease_seconds=3)
    sched.start()
    try:
        assert _wait(lambda: sched.leading, 10)
        key = start.date().isoformat()
        job = f"publish:{program['id']}:{key}"
        assert _wait(lambda: _jobs(database) >= {"reconcile", job}, 10), _jobs(database)
        # fired by APScheduler at start − 86 s, i.e. about 4 s from now (the reconcile ran at once)
        assert _wait(lambda: _state(database, program["id"], key) == "published", 20)
        # a date job is gone once it ran (APScheduler removes it just after the run returns)
        assert _wait(lambda: job not in _jobs(database), 5), _jobs(database)
    finally:
        sched.stop()
    assert not sched.leading


def _jobs(database) -> set[str]:  # noqa: ANN001
    with database.transaction() as s:
        return set(s.scalars(select(store.ScheduledJob.id)))


def _state(database, program: int, key: str) -> str | None:  # noqa: ANN001
    with database.transaction() as s:
        w = store.window(s, program, key)
        return w.state if w else None


def test_of_two_schedulers_one_leads_and_the_other_takes_over(database) -> None:  # noqa: ANN001
    a = FlexScheduler(database, holder="a", reconcile_seconds=3600, lease_seconds=2)
    b = FlexScheduler(database, holder="b", reconcile_seconds=3600, lease_seconds=2)
    a.start()
    try:
        assert _wait(lambda: a.leading, 10)
        b.start()
        time.sleep(2.5)  # several renewals
        assert a.leading and not b.leading
        a.stop()
        assert _wait(lambda: b.leading, 10)
    finally:
        a.stop()
        b.stop()


_CANDIDATE = textwrap.dedent("""
    import sys, time
    from server.db.session import Database
    from server.jobs.scheduler import FlexScheduler
    s = FlexScheduler(Database(sys.argv[1]), holder=sys.argv[2], reconcile_seconds=3600, lease_seconds=1.5)
    s.start()
    was = None
    while True:
        if s.leading != was:
            was = s.leading
            print("leading" if was else "waiting", flush=True)
        time.sleep(0.05)
""")


def test_leader_hand_over_between_two_processes_on_postgresql(database) -> None:  # noqa: ANN001
    """Kill -9 the leading process: the database drops its lock and the other process leads."""
    if database.engine.dialect.name != "postgresql":
        pytest.skip("needs PostgreSQL (DERFLEX_TEST_DATABASE_URL): the multi-process deployment")
    url = database.engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = []
    try:
        first = subprocess.Popen([sys.executable, "-c", _CANDIDATE, url, "first"], stdout=subprocess.PIPE, text=True, env=env)
        procs.append(first)
        assert first.stdout.readline().strip() in ("waiting", "leading")
        assert _wait(lambda: _advisory_holders(database) == 1, 15)
        second = subprocess.Popen([sys.executable, "-c", _CANDIDATE, url, "second"], stdout=subprocess.PIPE, text=True, env=env)
        procs.append(second)
        assert second.stdout.readline().strip() == "waiting"
        time.sleep(2)
        assert _advisory_holders(database) == 1
        first.kill()
        first.wait(10)
        assert second.stdout.readline().strip() == "leading"  # blocks until it takes over
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
            p.stdout.close()


def _advisory_holders(database) -> int:  # noqa: ANN001
    with database.engine.connect() as c:
        return int(c.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                                  "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")).scalar())


def _facts(database, kind: str) -> list[dict]:  # noqa: ANN001
    from server.db.outbox import OutboxFact

    with database.transaction() as s:
        return [json.loads(p) for p in s.scalars(select(OutboxFact.payload).where(OutboxFact.kind == kind)
                                                 .order_by(OutboxFact.id))]


def test_each_publish_is_one_outbox_fact_and_a_failing_consumer_changes_nothing(world, database) -> None:  # noqa: ANN001, F811
    """How the Beckn facade learns to push on_status: one fact per publish, recorded with it, none
    for a miss; a consumer that fails neither undoes nor repeats the publish."""
    from server.jobs.outbox import OutboxDrainer
    from server.services import outbox

    class Failing:
        name = outbox.BECKN

        def deliver(self, session, handoff, now) -> None:  # noqa: ANN001
            raise RuntimeError("the BAP side is down")

    clock = Clock(PUBLISH_AT)
    sched = FlexScheduler(database, clock=clock)
    (out,) = sched.reconcile()
    told = [(f["window_key"], f["revision"]) for f in _facts(database, "window.published")]
    assert out["action"] == "publish" and told == [(KEY, 1)]
    assert OutboxDrainer(database, [Failing()], clock=clock).drain() == 1
    assert sched.reconcile() == [] and len(_facts(database, "window.published")) == 1
    assert len(events(database, world["der_program"])) == 6


def test_after_a_window_ends_the_pass_settles_it_and_records_the_fact(database) -> None:  # noqa: ANN001
    from tests import builders as ts

    world = ts.make_world(database)
    ts.deliver(database, world)
    clock = Clock(ts.END + 599)  # the program's delay is 600 s
    sched = FlexScheduler(database, clock=clock)
    assert [o for o in sched.reconcile() if o["action"] == "settled"] == []
    assert _facts(database, "settlement.stored") == []
    clock.t = ts.END + 600
    settled = [o for o in sched.reconcile() if o["action"] == "settled"]
    assert [(o["window"], o["version"]) for o in settled] == [(ts.KEY, 1)]
    assert settled[0]["settlement"]["gross_minor"] == 256
    [told] = _facts(database, "settlement.stored")
    assert (told["window_key"], told["version"], told["reason"]) == (ts.KEY, 1, "scheduled")
    assert [o for o in sched.reconcile() if o["action"] == "settled"] == []
    assert len(_facts(database, "settlement.stored")) == 1

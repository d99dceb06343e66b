"""The notifier against a real HTTPS receiver (TLS 1.2 CCM8, our certificate required), on SQLite
and PostgreSQL: in order over kept-alive connections, retried on the schedule with the receiver's
other notifications held behind, dead after the last retry and replayed by the operator, and never
sent to an address the policy forbids."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from server.db import sub as store
from server.jobs.notify import Notifier, Sending
from server.pki import DevPKI
from server.services.sep2 import notifications
from tests.e2e.receiver import Receiver


@pytest.fixture
def receiver(pki: DevPKI) -> Any:
    rx = Receiver(pki.server_cert_path, pki.server_key_path, pki.trust_path).start()
    yield rx
    rx.stop()


_MADE: list[Notifier] = []


@pytest.fixture(autouse=True)
def _stop_notifiers() -> Any:
    yield
    while _MADE:
        _MADE.pop().stop()  # closes its kept-alive connections


def notifier(database: Any, pki: DevPKI, clock: Any, *, allow: tuple[str, ...] = ("loopback",),
             connections: int = 2) -> Notifier:
    sending = Sending(pki.server_cert_path, pki.server_key_path, pki.trust_path, allow, connections, 5.0)
    job = Notifier(database, sending, schedule=(10.0, 100.0), clock=clock, elect=False)
    _MADE.append(job)
    return job


def queue(database: Any, rx: Receiver, n: int, *, subs: int = 3, now: float = 1000.0) -> None:
    rows = [{"subscription_id": 1 + i % subs, "key": f"k{i}", "receiver": f"https://127.0.0.1:{rx.port}",
             "uri": rx.url(f"/s{1 + i % subs}"), "body": f"<Notification n='{i}'/>", "state": "pending",
             "attempts": 0, "next_attempt_at": now, "created_time": now, "replays": 0} for i in range(n)]
    with database.transaction() as s:
        store.queue(s, rows)


def states(database: Any) -> dict[str, int]:
    with database.transaction() as s:
        out: dict[str, int] = {}
        for state in s.scalars(select(store.Notification.state)):
            out[state] = out.get(state, 0) + 1
        return out


def test_in_order_per_subscription_over_kept_alive_connections(database, pki, receiver) -> None:  # noqa: ANN001
    queue(database, receiver, 60)
    job = notifier(database, pki, lambda: 1000.0)
    assert job.run_once() == 60
    for sub in (1, 2, 3):
        got = [int(b.split(b"'")[1]) for b in receiver.bodies(f"/s{sub}")]
        assert got == sorted(got) and len(got) == 20
    assert receiver.connections <= 2  # one per lane, kept alive
    assert all(r.content_type == "application/sep+xml" for r in receiver.received)
    assert states(database) == {"delivered": 60}
    assert job.run_once() == 0  # nothing twice
    assert len(receiver.received) == 60


def test_a_failing_receiver_is_retried_then_dead_then_replayed(database, pki, receiver) -> None:  # noqa: ANN001
    now = [1000.0]
    queue(database, receiver, 4, subs=1)
    job = notifier(database, pki, lambda: now[0])
    receiver.failing = True
    job.run_once()
    with database.transaction() as s:
        rows = s.scalars(select(store.Notification).order_by(store.Notification.id)).all()
        assert [r.attempts for r in rows] == [1, 0, 0, 0]  # the head tried; the rest held behind it
        assert {r.next_attempt_at for r in rows} == {1010.0}
        assert "HTTP 500" in rows[0].last_error
    now[0] = 1005.0
    assert job.run_once() == 0  # not due yet
    now[0] = 1010.0
    job.run_once()
    now[0] = 1110.0
    job.run_once()  # third attempt: the schedule (10, 100) is spent
    assert states(database) == {"dead": 1, "pending": 3}
    receiver.failing = False
    job.run_once()
    assert states(database) == {"dead": 1, "delivered": 3}
    with database.transaction() as s:
        dead = notifications.list_notifications(s, state="dead")["notifications"]
        assert [d["attempts"] for d in dead] == [3]
        stats = notifications.stats(s)["total"]
        assert (stats["dead"], stats["delivered"]) == (1, 3)
        assert notifications.replay(s, dead[0]["id"], now[0]) == [dead[0]["id"]]
    job.run_once()
    assert states(database) == {"delivered": 4}
    assert len(receiver.bodies("/s1")) == 4


def test_an_address_the_policy_forbids_is_never_sent_to(database, pki, receiver) -> None:  # noqa: ANN001
    queue(database, receiver, 2, subs=1)
    job = notifier(database, pki, lambda: 1000.0, allow=())  # loopback not allowed
    job.run_once()
    assert receiver.received == []
    with database.transaction() as s:
        [head, rest] = s.scalars(select(store.Notification).order_by(store.Notification.id)).all()
        assert head.state == "dead" and "may not go to" in head.last_error
        assert rest.state == "pending"


def test_a_receiver_without_our_trust_is_refused(database, pki, tmp_path) -> None:  # noqa: ANN001
    other = DevPKI(tmp_path / "other")
    other.ensure()
    rx = Receiver(other.server_cert_path, other.server_key_path, pki.trust_path).start()
    try:
        queue(database, rx, 1, subs=1)
        notifier(database, pki, lambda: 1000.0).run_once()
        time.sleep(0.1)
        assert rx.received == []
        with database.transaction() as s:
            [row] = s.scalars(select(store.Notification)).all()
            assert row.state == "pending" and "CERTIFICATE_VERIFY_FAILED" in row.last_error
    finally:
        rx.stop()

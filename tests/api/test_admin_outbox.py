"""The admin API of the outbox (server.api.admin_outbox): deliveries listed and filtered, counted,
dead letters replayed; bad input a clear 4xx problem that changes nothing, never a 5xx; no token,
no access."""

from __future__ import annotations

from sqlalchemy import select

from server.db import outbox as store
from server.jobs.outbox import OutboxDrainer
from server.services import outbox

T0 = 1_796_072_400.0  # 2026-11-30T21:00:00Z


class Failing:
    name = outbox.BECKN

    def deliver(self, session, handoff, now) -> None:  # noqa: ANN001
        raise RuntimeError("the BAP side is down")


class Working:
    name = outbox.BECKN

    def deliver(self, session, handoff, now) -> None:  # noqa: ANN001
        outbox.note_effect(session, handoff, f"test:{handoff.key}", now)


def _record(database, key: str, now: float) -> int:  # noqa: ANN001
    with database.transaction() as s:
        return outbox.record(s, outbox.WindowPublished(1, key, 1), now)


def _world(database) -> dict[str, int]:  # noqa: ANN001
    """Three deliveries: one delivered, one dead (failed twice on a 1 s schedule), one pending."""
    facts = {"delivered": _record(database, "2026-12-01", T0)}
    OutboxDrainer(database, [Working()], clock=lambda: T0).drain()
    facts["dead"] = _record(database, "2026-11-30", T0)
    with database.transaction() as s:
        outbox.record_controls(s, outbox.ControlCreated, 1, [5], ["C" * 32], T0)  # no consumer: no delivery
    for t in (T0, T0 + 1):
        OutboxDrainer(database, [Failing()], clock=lambda t=t: t, schedule=(1.0,)).drain()
    facts["pending"] = _record(database, "2026-12-02", T0 + 3600)
    with database.transaction() as s:
        by_fact = {d.fact_id: d for d in s.scalars(select(store.OutboxDelivery))}
    assert {name: by_fact[fid].state for name, fid in facts.items()} == {
        "dead": "dead", "delivered": "delivered", "pending": "pending"}
    return {name: by_fact[fid].id for name, fid in facts.items()}


def test_deliveries_are_listed_newest_first_and_filtered(operator, database) -> None:  # noqa: ANN001
    ids = _world(database)
    every = operator("GET", "/outbox").get_json()
    assert every["all"] == 3 and [d["id"] for d in every["deliveries"]] == sorted(ids.values(), reverse=True)
    [dead] = operator("GET", "/outbox?state=dead&consumer=beckn").get_json()["deliveries"]
    assert dead["id"] == ids["dead"] and dead["attempts"] == 2 and dead["next_attempt"] is None
    assert dead["last_error"] == "RuntimeError: the BAP side is down"
    assert dead["fact"]["kind"] == "window.published" and dead["fact"]["key"] == "1/2026-11-30/r1"
    assert dead["fact"]["payload"] == {"program_id": 1, "window_key": "2026-11-30", "revision": 1, "republished": False}
    [pending] = operator("GET", "/outbox?state=pending").get_json()["deliveries"]
    assert pending["next_attempt"] == "2026-11-30T22:00:00Z"
    assert operator("GET", "/outbox?consumer=nobody").get_json() == {"all": 0, "deliveries": []}
    page = operator("GET", "/outbox?start=1&limit=1").get_json()
    assert page["all"] == 3 and [d["id"] for d in page["deliveries"]] == [ids["dead"]]


def test_stats_count_each_consumer_by_state(operator, database) -> None:  # noqa: ANN001
    _world(database)
    assert operator("GET", "/outbox/stats").get_json() == {"consumers": [
        {"consumer": "beckn", "pending": 1, "retrying": 0, "delivered": 1, "retried": 0, "dead": 1}]}


def test_a_dead_letter_is_replayed_once_and_then_delivered(operator, database, monkeypatch) -> None:  # noqa: ANN001
    import server.api.admin_outbox as views

    monkeypatch.setattr(views, "now", lambda: int(T0) + 3)  # the admin API's clock
    ids = _world(database)
    resp = operator("POST", f"/outbox/{ids['dead']}/replay")
    assert resp.status_code == 200
    view = resp.get_json()
    assert (view["state"], view["attempts"], view["replays"], view["next_attempt"]) == (
        "pending", 0, 1, "2026-11-30T21:00:03Z")
    assert view["idempotency_key"].endswith(":r1")
    again = operator("POST", f"/outbox/{ids['dead']}/replay")
    assert again.status_code == 409 and again.mimetype == "application/problem+json"
    assert "only dead letters are replayed" in again.get_json()["detail"]
    assert OutboxDrainer(database, [Working()], clock=lambda: T0 + 3).drain() == 1
    assert operator("GET", "/outbox/stats").get_json()["consumers"][0]["delivered"] == 2


def test_bad_requests_are_clear_problems_and_change_nothing(operator, database) -> None:  # noqa: ANN001
    ids = _world(database)
    before = operator("GET", "/outbox").get_json()
    for path, status, words in (
        ("/outbox?state=lost", 400, "state must be one of pending, delivered, dead"),
        ("/outbox?consumer=be%00ckn", 400, "consumer must not contain control characters"),
        ("/outbox?consumer=" + "x" * 65, 400, "consumer must be text of at most 64 characters"),
        ("/outbox?limit=-1", 400, "'limit' must be a non-negative integer"),
    ):
        resp = operator("GET", path)
        assert resp.status_code == status and resp.mimetype == "application/problem+json", path
        assert words in resp.get_json()["detail"], resp.get_json()
    for path, status in ((f"/outbox/{ids['pending']}/replay", 409), (f"/outbox/{ids['delivered']}/replay", 409),
                         ("/outbox/999999/replay", 404), ("/outbox/0x1/replay", 404),
                         ("/outbox/99999999999999999999999/replay", 404)):
        resp = operator("POST", path)
        assert resp.status_code == status and resp.mimetype == "application/problem+json", path
    assert operator("GET", f"/outbox/{ids['dead']}/replay").status_code == 405
    assert operator("GET", "/outbox").get_json() == before


def test_no_token_no_access(app, database) -> None:  # noqa: ANN001
    client = app.test_client()
    for method, path in (("GET", "/admin/api/v1/outbox"), ("GET", "/admin/api/v1/outbox/stats"),
                         ("POST", "/admin/api/v1/outbox/1/replay")):
        resp = client.open(path, method=method, headers={"Authorization": "Bearer not-a-token"})
        assert resp.status_code == 401 and resp.mimetype == "application/problem+json"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")

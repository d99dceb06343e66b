"""The v2 catalog is built once and reused (#15: discover rebuilt it per request), and the worker
answers a batch of read-only v2 requests together.

* discover: one build while the "flex" change counter stays and no program's next window ends;
  the Offer's `validity.startDate` is the moment of each answer all the same; a program changed
  through derflex, or the next window ending, gives the next answer a new catalog; inside a
  transaction that changed programs the cached one is never used.
* a contract's on_status reads the same cache and never changes what it shares (its Resource
  carries the contract's quantity, the catalog's does not).
* a batch of discover and status requests (one of them for no such contract) is answered in one
  pass of pipeline.process_many: every request exactly one callback, the right one.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from server.db import beckn as beckn_store
from server.services.bpp import pipeline, v2catalog
from server.services.flex import programs as flex
from tests.builders import PROGRAM
from tests.services.test_beckn_v2_settlement import (  # noqa: F401 (world is a fixture)
    BAP, BAP_URI, BID_A, CONFIRM_AT, PROVIDER, call, confirm, world)


def _ts(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def discover(database, now: int) -> dict[str, Any]:  # noqa: ANN001
    [catalog] = call(database, "discover", {"intent": {"textSearch": "peak saver"}}, now, str(uuid.uuid4()))["catalogs"]
    return catalog


def test_discover_reuses_one_catalog_until_programs_change_or_the_next_window_ends(world, database, monkeypatch) -> None:  # noqa: ANN001, F811
    cid, txn, _ = confirm(database, world, world["lfdis"][:2], BID_A)
    v2catalog._catalogs.clear()  # (confirm's view of the contract read the catalog already)
    built: list[int] = []
    programs = v2catalog.store.programs
    monkeypatch.setattr(v2catalog.store, "programs", lambda s, **kw: built.append(1) or programs(s, **kw))
    t1 = CONFIRM_AT + 10
    first, second = discover(database, t1), discover(database, t1 + 60)
    assert len(built) == 1  # two answers, one catalog
    assert [r["id"] for r in first["resources"]] == [f"program-{world['program']}"]
    assert first["resources"] == second["resources"]
    assert first["offers"][0]["validity"]["startDate"] == _ts(t1)  # filled at answer time
    assert second["offers"][0]["validity"]["startDate"] == _ts(t1 + 60)
    assert first["offers"][0]["validity"]["endDate"] == second["offers"][0]["validity"]["endDate"]
    period = first["resources"][0]["resourceAttributes"]["intervalPeriod"]["start"]

    status = call(database, "status", {"contract": {"id": cid}}, t1 + 120, txn)["contract"]
    [commitment] = status["commitments"]
    assert commitment["resources"][0]["quantity"]["unitCode"] == "kW"
    assert "validity" not in commitment["offer"]
    assert commitment["offer"]["offerAttributes"]["inputs"][1]["inputs"]["participatingMeters"] == world["lfdis"][:2]
    third = discover(database, t1 + 180)
    assert "quantity" not in third["resources"][0] and third["resources"] == first["resources"]  # shared, unchanged
    assert "participantId" in third["offers"][0]["offerAttributes"]["inputs"][1]
    assert third["offers"][0]["offerAttributes"]["inputs"][1]["participantId"] is None
    assert len(built) == 1

    window_end = datetime.fromisoformat(period.replace("Z", "+00:00")).timestamp() + 7200  # 16:00-18:00 local
    later = discover(database, int(window_end))  # the next window ended: built again, the one after it
    assert len(built) == 2
    assert later["resources"][0]["resourceAttributes"]["intervalPeriod"]["start"] > period

    with database.transaction() as s:  # inside a transaction that changed programs: never the cached one
        flex.create_program(s, {**PROGRAM, "name": "Peak Saver Two"}, int(window_end) + 1)
        fresh = v2catalog.catalog(s, PROVIDER, int(window_end) + 1, text_search="peak saver")
        assert len(fresh["resources"]) == 2
    assert len(discover(database, int(window_end) + 2)["resources"]) == 2  # the counter moved
    with database.transaction() as s:
        flex.cancel_program(s, world["program"], int(window_end) + 3)
    after = discover(database, int(window_end) + 4)
    assert [r["descriptor"]["name"] for r in after["resources"]] == ["Peak Saver Two"]


def _stored(s, action: str, message: dict[str, Any], now: int, txn: str) -> int:  # noqa: ANN001
    ctx = {"version": "2.0.0", "action": action, "bapId": BAP, "bapUri": BAP_URI, "bppId": PROVIDER.bpp_id,
           "bppUri": PROVIDER.v2_uri, "transactionId": txn, "messageId": str(uuid.uuid4()), "timestamp": _ts(now),
           "ttl": "PT1H"}
    row = beckn_store.BecknInbox(bap_id=BAP, action="v2:" + action, message_id=ctx["messageId"], transaction_id=txn,
                                 body=json.dumps({"context": ctx, "message": message}).encode(), received_time=now,
                                 state="received", claimed_until=0.0)
    s.add(row)
    s.flush()
    return row.id


def test_a_batch_of_discover_and_status_requests_is_answered_in_one_pass(world, database) -> None:  # noqa: ANN001, F811
    cid, txn, _ = confirm(database, world, world["lfdis"][:2], BID_A)
    now = CONFIRM_AT + 30
    missing = str(uuid.uuid4())
    asked = ["discover", "status", "discover", "status-missing", "status", "discover"]
    with database.transaction() as s:
        ids = [_stored(s, a.split("-")[0], {"intent": {"textSearch": "Peak"}} if a == "discover" else
                       {"contract": {"id": missing if a == "status-missing" else cid}}, now, txn) for a in asked]
    assert pipeline.process_many(database, ids, now, PROVIDER) == len(ids)
    with database.transaction() as s:
        rows = {r.inbox_id: r for r in s.query(beckn_store.BecknOutbox).filter(beckn_store.BecknOutbox.inbox_id.in_(ids))}
        states = {r.state for r in s.query(beckn_store.BecknInbox).filter(beckn_store.BecknInbox.id.in_(ids))}
    assert states == {"processed"} and sorted(rows) == sorted(ids)  # every request exactly one callback
    for inbox_id, a in zip(ids, asked):
        body = json.loads(rows[inbox_id].body)
        assert body["context"]["action"] == ("on_discover" if a == "discover" else "on_status")
        if a == "discover":
            [catalog] = body["message"]["catalogs"]
            assert catalog["offers"][0]["validity"]["startDate"] == _ts(now)
        elif a == "status":
            assert body["message"]["contract"]["id"] == cid and "error" not in body
            assert body["message"]["contract"]["status"]["code"] == "ACTIVE"
        else:
            assert body["error"]["errorCode"] and missing in body["error"]["errorMessage"]

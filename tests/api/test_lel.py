"""Log events: a device posts LogEvents to its own LogEventList (201 + Location) and reads them
back newest first; another device's list is not found; bad values store nothing; a device keeps
a bounded number; operators read them through the admin API."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from server.db.log_events import LogEventRow
from server.sep2 import codec
from server.sep2.log import LogEvent, LogEventList
from server.sep2.models import EndDevice, Error
from server.services.sep2 import edev, lel


@pytest.fixture
def world(database, cast):  # noqa: ANN001, ANN201
    with database.transaction() as s:
        owner = edev.register_out_of_band(s, cast["owner"].lfdi, 0).id
        other = edev.register_out_of_band(s, cast["other"].lfdi, 0).id
        managed = edev.register_out_of_band(s, cast["managed"].lfdi, 0, aggregator_lfdi=cast["aggregator"].lfdi).id
    return {"owner": owner, "other": other, "managed": managed}


def event(created: int = 1_800_000_000, ident: int = 1, **over) -> bytes:  # noqa: ANN003
    fields = dict(created_date_time=created, details="inverter trip", function_set=11, log_event_code=4,
                  log_event_id=ident, log_event_pen=40732, profile_id=2)
    fields.update(over)
    return codec.render(LogEvent(**fields))


def count(database) -> int:  # noqa: ANN001
    with database.transaction() as s:
        return s.scalar(select(func.count()).select_from(LogEventRow))


def test_a_device_posts_and_reads_its_log_events(world, cast, client_for, sep2_schema) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    ed = codec.parse(c.get(f"/edev/{world['owner']}").data, EndDevice)
    lel_href = ed.log_event_list_link.href
    assert lel_href == f"/edev/{world['owner']}/lel"
    locations = []
    for created, ident in ((100, 1), (300, 2), (200, 3)):
        resp = c.post(lel_href, data=event(created, ident, extended_data=ident * 10))
        assert resp.status_code == 201, resp.data
        locations.append(resp.headers["Location"])
    got = c.get(locations[1])
    sep2_schema(got.data)
    one = codec.parse(got.data, LogEvent)
    assert (one.href, one.created_date_time, one.log_event_id, one.extended_data, one.details) == (
        locations[1], 300, 2, 20, "inverter trip")
    resp = c.get(lel_href + "?l=10")
    sep2_schema(resp.data)
    listing = codec.parse(resp.data, LogEventList)
    assert (listing.all, listing.results) == (3, 3)
    assert [e.created_date_time for e in listing.log_events] == [300, 200, 100]  # newest first
    assert codec.parse(c.get(lel_href).data, LogEventList).results == 1  # a bare GET: one
    assert [e.log_event_id for e in codec.parse(c.get(lel_href + "?s=1&l=1").data, LogEventList).log_events] == [3]


def test_only_a_device_that_may_see_the_end_device_posts_or_reads(world, cast, client_for, database) -> None:  # noqa: ANN001
    owner, other, agg = client_for(cast["owner"]), client_for(cast["other"]), client_for(cast["aggregator"])
    o = world["owner"]
    assert owner.post(f"/edev/{o}/lel", data=event()).status_code == 201
    assert other.post(f"/edev/{o}/lel", data=event()).status_code == 404
    assert other.get(f"/edev/{o}/lel").status_code == 404
    assert other.get(f"/edev/{o}/lel/1").status_code == 404
    assert owner.post("/edev/999/lel", data=event()).status_code == 404
    assert client_for(cast["unregistered"]).post(f"/edev/{o}/lel", data=event()).status_code == 404
    assert client_for(None).post(f"/edev/{o}/lel", data=event()).status_code == 403
    assert agg.post(f"/edev/{world['managed']}/lel", data=event()).status_code == 201  # its managed device
    assert agg.post(f"/edev/{o}/lel", data=event()).status_code == 404
    assert count(database) == 2
    assert owner.get(f"/edev/{o}/lel/2").status_code == 404  # the managed device's, not this one's
    resp = owner.put(f"/edev/{o}/lel", data=event())
    assert resp.status_code == 405 and "POST" in resp.headers["Allow"]


@pytest.mark.parametrize("body", [
    event().replace(b"<functionSet>11<", b"<functionSet>256<"),
    event().replace(b"<logEventID>1<", b"<logEventID>-1<"),
    event().replace(b"inverter trip", b"x" * 33),
    event().replace(b"<profileID>2</profileID>", b""),
    event().replace(b"LogEvent", b"LogEventList"),
    b"<LogEvent xmlns='urn:ieee:std:2030.5:ns'><createdDateTime>1<",
])
def test_bad_log_events_are_400_and_store_nothing(world, cast, client_for, database, body: bytes) -> None:  # noqa: ANN001
    resp = client_for(cast["owner"]).post(f"/edev/{world['owner']}/lel", data=body)
    assert resp.status_code == 400, resp.data
    assert codec.parse(resp.data, Error).reason_code in (0, 1)
    assert count(database) == 0


def test_control_characters_in_details_are_refused(world, cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    for char in (b"&#127;", b"&#x85;", b"&#7;"):  # XML carries the first two; the third is not XML
        resp = c.post(f"/edev/{world['owner']}/lel", data=event(details="aXb").replace(b"aXb", b"a" + char + b"b"))
        assert resp.status_code == 400, (char, resp.status_code)
    assert count(database) == 0


def test_a_device_keeps_only_the_newest_arrivals(world, database) -> None:  # noqa: ANN001
    from server.scope import Scope

    scope = Scope.operator()
    posted = codec.parse(event(), LogEvent)
    with database.transaction() as s:
        ids = [lel.post_log_event(s, scope, world["owner"], posted, 10 + i, keep=3) for i in range(5)]
        lel.post_log_event(s, scope, world["other"], posted, 10, keep=3)
    with database.transaction() as s:
        kept = lel.device_log_events(s, world["owner"], 0, 10)
        assert kept["all"] == 3
        assert sorted(e["id"] for e in kept["log_events"]) == ids[2:]  # the two oldest dropped
        assert lel.device_log_events(s, world["other"])["all"] == 1  # another device's untouched


def test_operators_read_a_devices_log_events(world, cast, client_for, operator) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    for created in (100, 200, 300):
        c.post(f"/edev/{world['owner']}/lel", data=event(created, created))
    resp = operator("GET", f"/devices/{world['owner']}/log-events?limit=2")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["all"] == 3 and [e["createdDateTime"] for e in body["log_events"]] == [300, 200]
    first = body["log_events"][0]
    assert (first["functionSet"], first["logEventCode"], first["logEventPEN"], first["device_id"]) == (11, 4, 40732, world["owner"])
    assert operator("GET", f"/devices/{world['owner']}/log-events?start=2").get_json()["log_events"][0]["createdDateTime"] == 100
    assert operator("GET", f"/devices/{world['other']}/log-events").get_json() == {"all": 0, "log_events": []}
    assert operator("GET", "/devices/999/log-events").status_code == 404
    assert operator("GET", f"/devices/{world['owner']}/log-events?limit=x").status_code == 400
    assert c._client.get(f"/admin/api/v1/devices/{world['owner']}/log-events").status_code == 401

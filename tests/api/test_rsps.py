"""Responses: devices acknowledge events at the event's replyTo; only real events of the program,
for a device the caller may answer for, with a defined status, are accepted."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from server.db import rsps as store
from server.db.rsps import DerResponse
from server.sep2 import codec
from server.sep2.derp import DERControlList
from server.sep2.rsps import DERControlResponse, Response, ResponseList, ResponseSetList
from server.services.sep2 import derp, edev

NOW = int(time.time())  # events exist from now (Responses are judged against the real clock)
T0 = NOW + 86_400


@pytest.fixture
def world(database, cast):  # noqa: ANN001, ANN201
    with database.transaction() as s:
        owner = edev.register_out_of_band(s, cast["owner"].lfdi, 0).id
        other = edev.register_out_of_band(s, cast["other"].lfdi, 0).id
        managed = edev.register_out_of_band(s, cast["managed"].lfdi, 0, aggregator_lfdi=cast["aggregator"].lfdi).id
        prog = derp.create_der_program(s, description="Peak Saver", primacy=1, now=0).id
        lonely = derp.create_der_program(s, description="Elsewhere", primacy=1, now=0).id
        derp.add_members(s, prog, [owner, other, managed])
        base = derp.control_base({"opModFixedW": 5000})
        everyone = derp.create_events(s, prog, start=T0 + 60, duration=600, controls=[(None, base)], now=NOW)[0].mrid
        only_other = derp.create_events(s, prog, start=T0 + 60, duration=600, controls=[(other, base)], now=NOW)[0].mrid
        elsewhere = derp.create_events(s, lonely, start=T0 + 60, duration=600, controls=[(None, base)], now=NOW)[0].mrid
    return {"owner": owner, "other": other, "managed": managed, "program": prog, "everyone": everyone,
            "only_other": only_other, "elsewhere": elsewhere}


def body(lfdi: str, subject: str, status: int | None = 1, root: type = Response) -> bytes:
    return codec.render(root(end_device_lfdi=lfdi, subject=subject, status=status, created_date_time=T0))


def count(database) -> int:  # noqa: ANN001
    with database.transaction() as s:
        return s.scalar(select(func.count()).select_from(DerResponse))


def test_device_answers_at_the_reply_to_of_its_event(world, cast, client_for, database, sep2_schema) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    listing = codec.parse(c.get(f"/edev/{world['owner']}/derp/{world['program']}/derc?l=10").data, DERControlList)
    [event] = listing.der_controls
    for status, root in ((1, Response), (2, DERControlResponse), (3, Response)):
        resp = c.post(event.reply_to, data=body(cast["owner"].lfdi, event.mrid, status, root))
        assert resp.status_code == 201, resp.data
        got = c.get(resp.headers["Location"])
        sep2_schema(got.data)
        assert codec.parse(got.data, Response).status == status
    mine = codec.parse(c.get(event.reply_to + "?l=10").data, ResponseList)
    assert [r.status for r in mine.responses] == [1, 2, 3] and mine.all == 3
    sets = codec.parse(c.get("/rsps?l=10").data, ResponseSetList)
    assert [s.response_list_link.href for s in sets.response_sets] == [event.reply_to]


def test_aggregator_answers_for_its_devices(world, cast, client_for, database) -> None:  # noqa: ANN001
    agg = client_for(cast["aggregator"])
    resp = agg.post(f"/rsps/{world['program']}/rsp", data=body(cast["managed"].lfdi, world["everyone"]))
    assert resp.status_code == 201


@pytest.mark.parametrize(
    ("who", "lfdi_of", "subject", "status"),
    [
        pytest.param("owner", "other", "everyone", 1, id="someone-elses-lfdi"),
        pytest.param("aggregator", "owner", "everyone", 1, id="aggregator-for-a-device-it-does-not-manage"),
        pytest.param("owner", "owner", "only_other", 1, id="event-for-another-device"),
        pytest.param("owner", "owner", "elsewhere", 1, id="event-of-another-program"),
        pytest.param("owner", "owner", "0" * 32, 1, id="unknown-event"),
        pytest.param("owner", "owner", "everyone", 99, id="undefined-status"),
        pytest.param("owner", "owner", "everyone", None, id="no-status"),
    ],
)
def test_refused_responses_store_nothing(world, cast, client_for, database, who, lfdi_of, subject, status) -> None:  # noqa: ANN001
    mrid = world.get(subject, subject)
    resp = client_for(cast[who]).post(f"/rsps/{world['program']}/rsp", data=body(cast[lfdi_of].lfdi, mrid, status))
    assert resp.status_code == 400
    assert count(database) == 0


def test_strangers_and_wrong_bodies(world, cast, client_for, database) -> None:  # noqa: ANN001
    path = f"/rsps/{world['program']}/rsp"
    assert client_for(None).post(path, data=body(cast["owner"].lfdi, world["everyone"])).status_code == 403
    assert client_for(cast["owner"]).post(path, data=b"<Response/>").status_code == 400
    assert client_for(cast["owner"]).post(path, data=codec.render(DERControlList())).status_code == 400
    assert count(database) == 0


def test_nobody_reads_anothers_responses(world, cast, client_for, database) -> None:  # noqa: ANN001
    loc = client_for(cast["owner"]).post(f"/rsps/{world['program']}/rsp", data=body(cast["owner"].lfdi, world["everyone"])).headers["Location"]
    other = client_for(cast["other"])
    assert other.get(loc).status_code == 404
    assert codec.parse(other.get(f"/rsps/{world['program']}/rsp?l=10").data, ResponseList).all == 0
    assert client_for(cast["unregistered"]).get(f"/rsps/{world['program']}").status_code == 404


def test_summary_counts_each_devices_latest_status(world, cast, client_for, database) -> None:  # noqa: ANN001
    path = f"/rsps/{world['program']}/rsp"
    client_for(cast["owner"]).post(path, data=body(cast["owner"].lfdi, world["everyone"], 1))
    client_for(cast["owner"]).post(path, data=body(cast["owner"].lfdi, world["everyone"], 2))
    client_for(cast["other"]).post(path, data=body(cast["other"].lfdi, world["everyone"], 4))
    with database.transaction() as s:
        from server.db.derp import get_event_by_mrid

        assert store.summary(s, get_event_by_mrid(s, world["everyone"]).id) == {2: 1, 4: 1}

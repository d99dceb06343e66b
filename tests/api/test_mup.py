"""Metering mirror end to end: POST /mup (201/204 upsert), readings posted to /mup/{id} with and
without their ReadingType, idempotent re-posts, who may post and read what, refused input storing
nothing, the read side walked from /upt down to one Reading (schema-valid, paged, `a`), the
domain query load_series with hand-computed numbers, and the schema (models = migrations)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete, func, select

from server.db import changes, metering, migrate
from server.db.models import Device
from server.sep2 import codec
from server.sep2.derp import DateTimeInterval
from server.sep2.models import Error
from server.sep2.mup import (
    MeterReading,
    MeterReadingList,
    MirrorMeterReading,
    MirrorMeterReadingList,
    MirrorReadingSet,
    MirrorUsagePoint,
    MirrorUsagePointList,
    Reading,
    ReadingList,
    ReadingSet,
    ReadingSetList,
    ReadingType,
    UsagePoint,
    UsagePointList,
)
from server.services.sep2 import mup as mup_service
from tests.builders import registered_cast

NOW = int(time.time())
DAY = 86_400
TODAY = NOW // DAY * DAY  # 00:00 UTC today
MUP_MRID = "0123456789ABCDEF0123456789ABCDEF"
W_MRID = "A0000000000000000000000000000001"
VAR_MRID = "A0000000000000000000000000000002"
# Another device's meter readings: MirrorMeterReading mRIDs belong to one device.
W2_MRID = "A0000000000000000000000000000003"
VAR2_MRID = "A0000000000000000000000000000004"

RT_W = ReadingType(
    accumulation_behaviour=12, commodity=1, data_qualifier=12, flow_direction=1, interval_length=300,
    kind=37, power_of_ten_multiplier=0, uom=38,
)
RT_VAR = ReadingType(accumulation_behaviour=12, flow_direction=1, kind=37, power_of_ten_multiplier=2, uom=63)


def _reason(resp) -> int:  # noqa: ANN001
    return codec.parse(resp.data, Error).reason_code


def _set(start: int, values: list[int], step: int = 300, mrid: str = "B0000000000000000000000000000001") -> MirrorReadingSet:
    return MirrorReadingSet(
        mrid=mrid,
        time_period=DateTimeInterval(start=start, duration=step * len(values)),
        readings=[
            Reading(time_period=DateTimeInterval(start=start + i * step, duration=step), value=v, quality_flags="01")
            for i, v in enumerate(values)
        ],
    )


def _mmr(mrid: str = W_MRID, rt: ReadingType | None = None, sets: list[MirrorReadingSet] | None = None, **kw: Any) -> MirrorMeterReading:
    return MirrorMeterReading(mrid=mrid, reading_type=rt, mirror_reading_sets=sets or [], **kw)


def _mup(lfdi: str, mrid: str = MUP_MRID, mmrs: list[MirrorMeterReading] | None = None, **kw: Any) -> MirrorUsagePoint:
    fields = {"role_flags": "49", "service_category_kind": 0, "status": 1, "description": "DER", **kw}
    return MirrorUsagePoint(mrid=mrid, device_lfdi=lfdi, mirror_meter_readings=mmrs or [], **fields)


def _rows(database, table, **where: Any) -> list[Any]:  # noqa: ANN001
    stmt = select(table.__table__).order_by(*table.__table__.primary_key.columns)
    for key, value in where.items():
        stmt = stmt.where(getattr(table, key) == value)
    with database.read() as conn:
        return conn.execute(stmt).all()


def _counts(database) -> tuple[int, int, int, int]:  # noqa: ANN001
    with database.read() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (metering.UsagePoint, metering.MeterReading, metering.Reading, metering.ReadingDay)
        )


@pytest.fixture
def world(app, database, cast, client_for):  # noqa: ANN001, ANN201
    """owner and other registered by the operator; managed registered (in-band) by the aggregator."""
    return registered_cast(database, cast, client_for)


def _create(client, lfdi: str, **kw: Any) -> int:  # noqa: ANN001
    """POST a MUP with a W and a var reading type; the usage point's id."""
    mmrs = kw.pop("mmrs", [_mmr(W_MRID, RT_W), _mmr(VAR_MRID, RT_VAR)])
    resp = client.post("/mup", data=codec.render(_mup(lfdi, mmrs=mmrs, **kw)))
    assert resp.status_code in (201, 204), resp.headers.get("X-Error-Detail")
    return int(resp.headers["Location"].rsplit("/", 1)[1])


def _mr_ids(database, upt: int) -> dict[str, int]:  # noqa: ANN001
    return {r.mrid: r.id for r in _rows(database, metering.MeterReading, usage_point_id=upt)}


# ------------------------------------------------------------------------ POST /mup (upsert)


def test_post_mup_creates_then_writes_over(world, cast, client_for, database, sep2_schema) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    body = codec.render(_mup(cast["owner"].lfdi, mmrs=[_mmr(W_MRID, RT_W)], post_rate=300))
    first = c.post("/mup", data=body)
    assert first.status_code == 201 and first.data == b"" and "Content-Type" not in first.headers
    location = first.headers["Location"]
    assert location.startswith("/mup/")
    got = c.get(location)
    assert got.status_code == 200
    sep2_schema(got.data)
    mup = codec.parse(got.data, MirrorUsagePoint)
    assert mup == MirrorUsagePoint(
        href=location, mrid=MUP_MRID, description="DER", role_flags="49", service_category_kind=0, status=1,
        device_lfdi=cast["owner"].lfdi, post_rate=300,
    )  # first-level elements only: no MirrorMeterReadings (§10.11.3 c)
    # the same mRID again: written over, 204 with the same Location
    again = c.post("/mup", data=codec.render(_mup(cast["owner"].lfdi, status=0, description="off now", version=2)))
    assert again.status_code == 204 and again.headers["Location"] == location and again.data == b""
    mup = codec.parse(c.get(location).data, MirrorUsagePoint)
    assert (mup.status, mup.description, mup.version, mup.post_rate) == (0, "off now", 2, None)
    assert len(_rows(database, metering.UsagePoint)) == 1
    assert len(_rows(database, metering.MeterReading)) == 1  # the W reading type is kept
    head = c.open("HEAD", location)
    assert head.status_code == 200 and head.data == b""


def test_the_operators_post_rate_wins(world, cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    upt = _create(c, cast["owner"].lfdi, post_rate=60)
    assert codec.parse(c.get(f"/mup/{upt}").data, MirrorUsagePoint).post_rate == 60
    with database.transaction() as s:
        s.get(Device, world["owner"]).post_rate = 900
    assert codec.parse(c.get(f"/mup/{upt}").data, MirrorUsagePoint).post_rate == 900


def test_the_same_mrid_from_another_device_is_another_usage_point(world, cast, client_for, database) -> None:  # noqa: ANN001
    a = _create(client_for(cast["owner"]), cast["owner"].lfdi)
    b = _create(client_for(cast["aggregator"]), cast["managed"].lfdi, mmrs=[_mmr(W2_MRID, RT_W)])
    assert a != b and len(_rows(database, metering.UsagePoint)) == 2
    assert client_for(cast["owner"]).get(f"/mup/{b}").status_code == 404


def test_a_mup_may_bring_its_readings(world, cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    upt = _create(c, cast["owner"].lfdi, mmrs=[_mmr(W_MRID, RT_W, [_set(TODAY, [100, 200, 300])])])
    (mr,) = _rows(database, metering.MeterReading)
    assert (mr.usage_point_id, mr.uom, mr.multiplier, mr.flow_direction, mr.interval_length) == (upt, 38, 0, 1, 300)
    assert [(r.start, r.value, r.duration, r.quality_flags) for r in _rows(database, metering.Reading)] == [
        (TODAY, 100, 300, 1), (TODAY + 300, 200, 300, 1), (TODAY + 600, 300, 300, 1)]


def test_mup_limit_per_device(world, cast, client_for, database, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(mup_service, "MAX_USAGE_POINTS_PER_DEVICE", 2)
    c = client_for(cast["owner"])
    for i in range(2):
        _create(c, cast["owner"].lfdi, mrid=f"{i:032X}")
    resp = c.post("/mup", data=codec.render(_mup(cast["owner"].lfdi, mrid="FF" * 16)))
    assert resp.status_code == 400 and _reason(resp) == 2
    assert len(_rows(database, metering.UsagePoint)) == 2
    _create(c, cast["owner"].lfdi, mrid=f"{1:032X}")  # an existing one may still be written over


# --------------------------------------------------------------------- POST /mup/{id} readings


def test_readings_need_their_reading_type_the_first_time(world, cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    upt = _create(c, cast["owner"].lfdi, mmrs=[])
    before = _counts(database)
    # a list with one good reading and one new mRID without its ReadingType: nothing is stored
    bad = MirrorMeterReadingList(mirror_meter_readings=[
        _mmr(W_MRID, RT_W, [_set(TODAY, [1])]), _mmr(VAR_MRID, None, [_set(TODAY, [2])])])
    resp = c.post(f"/mup/{upt}", data=codec.render(bad))
    assert resp.status_code == 400 and _reason(resp) == 1
    assert _counts(database) == before
    # with it: created, 201 + the MeterReading's Location
    resp = c.post(f"/mup/{upt}", data=codec.render(_mmr(W_MRID, RT_W, [_set(TODAY, [1, 2])])))
    assert resp.status_code == 201, resp.headers.get("X-Error-Detail")
    mr = _mr_ids(database, upt)[W_MRID]
    assert resp.headers["Location"] == f"/upt/{upt}/mr/{mr}" and resp.data == b""
    # later posts may leave it out (rule n), or repeat it unchanged
    assert c.post(f"/mup/{upt}", data=codec.render(_mmr(W_MRID, None, [_set(TODAY + 600, [3])]))).status_code == 201
    assert c.post(f"/mup/{upt}", data=codec.render(_mmr(W_MRID, RT_W, [_set(TODAY + 900, [4])]))).status_code == 201
    assert [r.value for r in _rows(database, metering.Reading)] == [1, 2, 3, 4]


def test_a_list_answers_the_meter_reading_list(world, cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    upt = _create(c, cast["owner"].lfdi)
    body = MirrorMeterReadingList(all=2, results=2, mirror_meter_readings=[
        _mmr(W_MRID, None, [_set(TODAY, [10])]), _mmr(VAR_MRID, None, [_set(TODAY, [20])])])
    resp = c.post(f"/mup/{upt}", data=codec.render(body))
    assert resp.status_code == 201 and resp.headers["Location"] == f"/upt/{upt}/mr"
    assert sorted(r.value for r in _rows(database, metering.Reading)) == [10, 20]
    empty = c.post(f"/mup/{upt}", data=codec.render(MirrorMeterReadingList()))
    assert empty.status_code == 201


def test_a_changed_reading_type_without_readings_is_written_over(world, cast, client_for, database, sep2_schema) -> None:  # noqa: ANN001
    """Rule h.1: the contents of a re-posted MirrorMeterReading overwrite its MeterReading; with
    nothing stored under the old ReadingType there is nothing to keep apart."""
    c = client_for(cast["owner"])
    upt = _create(c, cast["owner"].lfdi)
    before = _mr_ids(database, upt)[W_MRID]
    changed = dataclasses.replace(RT_W, power_of_ten_multiplier=3)
    resp = c.post(f"/mup/{upt}", data=codec.render(_mmr(W_MRID, changed)))
    assert resp.status_code == 201 and resp.headers["Location"] == f"/upt/{upt}/mr/{before}"
    rt = c.get(f"/upt/{upt}/mr/{before}/rt")
    sep2_schema(rt.data)
    assert codec.parse(rt.data, ReadingType).power_of_ten_multiplier == 3
    assert {r.mrid: (r.id, r.multiplier) for r in _rows(database, metering.MeterReading)} == {
        W_MRID: (before, 3), VAR_MRID: (_mr_ids(database, upt)[VAR_MRID], 2)}


def test_a_changed_reading_type_keeps_old_readings_in_their_own_unit(world, cast, client_for, database, sep2_schema) -> None:  # noqa: ANN001
    """With readings stored, the old MeterReading is retired with them (never read in the new
    unit: settlement reads them) and a new MeterReading takes the mRID and the new ReadingType."""
    c = client_for(cast["owner"])
    upt = _create(c, cast["owner"].lfdi, mmrs=[_mmr(W_MRID, RT_W, [_set(TODAY, [100, 200])])])
    old = _mr_ids(database, upt)[W_MRID]
    # the device now reports export in kW: reverse flow, ×10^3
    changed = dataclasses.replace(RT_W, flow_direction=19, power_of_ten_multiplier=3)
    resp = c.post(f"/mup/{upt}", data=codec.render(_mmr(W_MRID, changed, [_set(TODAY + 3600, [2])])))
    assert resp.status_code == 201
    new = int(resp.headers["Location"].rsplit("/", 1)[1])
    assert new != old
    rows = {r.id: r for r in _rows(database, metering.MeterReading)}
    assert (rows[old].retired_time is not None, rows[old].flow_direction, rows[old].multiplier) == (True, 1, 0)
    assert (rows[new].retired_time, rows[new].flow_direction, rows[new].multiplier) == (None, 19, 3)
    assert [(r.meter_reading_id, r.value) for r in _rows(database, metering.Reading)] == [(old, 100), (old, 200), (new, 2)]
    # served: the new MeterReading only; the retired one is gone from /upt
    listed = c.get(f"/upt/{upt}/mr?l=10")
    sep2_schema(listed.data)
    doc = codec.parse(listed.data, MeterReadingList)
    assert doc.all == 1 and [m.href for m in doc.meter_readings] == [f"/upt/{upt}/mr/{new}"]
    assert c.get(f"/upt/{upt}/mr/{old}").status_code == 404
    assert codec.parse(c.get(f"/upt/{upt}/mr/{new}/rt").data, ReadingType).flow_direction == 19
    # M&V reads each reading in the unit it was posted in: +100 W, +200 W, then −2 kW exported
    with database.read() as conn:
        starts, watts = metering.load_series(conn, world["owner"], TODAY, TODAY + 7200)
        assert list(starts) == [TODAY, TODAY + 300, TODAY + 3600] and list(watts) == [100.0, 200.0, -2000.0]
        fleet = metering.load_fleet_readings(conn, [world["owner"]], [(TODAY, TODAY + 7200)])  # settlement's query
    assert list(fleet.starts) == [TODAY, TODAY + 300, TODAY + 3600] and list(fleet.watts) == [100.0, 200.0, -2000.0]
    # later POSTs without a ReadingType go to the new MeterReading
    assert c.post(f"/mup/{upt}", data=codec.render(_mmr(W_MRID, None, [_set(TODAY + 7200, [3])]))).status_code == 201
    assert [r.value for r in _rows(database, metering.Reading, meter_reading_id=new)] == [2, 3]
    # and so does a re-POST of the MirrorUsagePoint with the original type: retired again, kept
    resp = c.post("/mup", data=codec.render(_mup(cast["owner"].lfdi, mmrs=[_mmr(W_MRID, RT_W)])))
    assert resp.status_code == 204
    assert [r.retired_time is None for r in _rows(database, metering.MeterReading)] == [False, False, True]
    assert len(_rows(database, metering.Reading)) == 4  # nothing deleted, nothing rewritten


def test_retired_meter_readings_count_toward_the_limit(world, cast, client_for, database, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(mup_service, "MAX_METER_READINGS_PER_USAGE_POINT", 3)
    c = client_for(cast["owner"])
    upt = _create(c, cast["owner"].lfdi, mmrs=[_mmr(W_MRID, RT_W, [_set(TODAY, [1])]), _mmr(VAR_MRID, RT_VAR)])
    changed = dataclasses.replace(RT_W, power_of_ten_multiplier=1)
    assert c.post(f"/mup/{upt}", data=codec.render(_mmr(W_MRID, changed, [_set(TODAY + 300, [1])]))).status_code == 201
    before = _counts(database)
    resp = c.post(f"/mup/{upt}", data=codec.render(_mmr(W_MRID, RT_W, [_set(TODAY + 600, [1])])))
    assert resp.status_code == 400 and _reason(resp) == 2
    assert _counts(database) == before


def test_a_meter_reading_mrid_of_another_device_is_refused(world, cast, client_for, database) -> None:  # noqa: ANN001
    owner, agg = client_for(cast["owner"]), client_for(cast["aggregator"])
    _create(owner, cast["owner"].lfdi, mmrs=[_mmr(W_MRID, RT_W, [_set(TODAY, [1])])])
    before = _counts(database)
    # in a new MirrorUsagePoint of another device: 409 with a 2030.5 Error, nothing stored
    resp = agg.post("/mup", data=codec.render(_mup(cast["managed"].lfdi, mmrs=[_mmr(W_MRID, RT_W, [_set(TODAY, [9])])])))
    assert resp.status_code == 409 and resp.mimetype == "application/sep+xml" and _reason(resp) == 1
    assert _counts(database) == before
    # posted to another device's existing usage point: the same
    theirs = _create(agg, cast["managed"].lfdi, mmrs=[_mmr(W2_MRID, RT_W)])
    before = _counts(database)
    resp = agg.post(f"/mup/{theirs}", data=codec.render(MirrorMeterReadingList(mirror_meter_readings=[
        _mmr(W2_MRID, None, [_set(TODAY, [5])]), _mmr(W_MRID, RT_W, [_set(TODAY, [9])])])))
    assert resp.status_code == 409 and _counts(database) == before
    # the device that owns the mRID goes on as before, also under a second usage point of its own
    assert owner.post("/mup", data=codec.render(_mup(cast["owner"].lfdi, mrid="E" * 32, mmrs=[_mmr(W_MRID, RT_W)]))).status_code == 201


def test_a_reposted_reading_replaces_and_never_duplicates(world, cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    upt = _create(c, cast["owner"].lfdi)
    twelve = codec.render(_mmr(W_MRID, None, [_set(TODAY, list(range(100, 112)))]))
    for _ in range(3):  # a network retry, twice
        assert c.post(f"/mup/{upt}", data=twelve).status_code == 201
    assert len(_rows(database, metering.Reading)) == 12
    assert len(_rows(database, metering.ReadingDay)) == 1
    # a corrected value for the same start replaces the stored one
    fixed = _mmr(W_MRID, None, [_set(TODAY + 300, [555])])
    assert c.post(f"/mup/{upt}", data=codec.render(fixed)).status_code == 201
    values = [r.value for r in _rows(database, metering.Reading)]
    assert len(values) == 12 and values[1] == 555
    # duplicates inside one POST: the last wins
    dup = _mmr(W_MRID, None, [_set(TODAY, [7]), _set(TODAY, [8], mrid="B" * 32)])
    assert c.post(f"/mup/{upt}", data=codec.render(dup)).status_code == 201
    assert _rows(database, metering.Reading)[0].value == 8


def test_readings_without_a_time_period(world, cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    upt = _create(c, cast["owner"].lfdi)
    # in a set: the set's start + position × intervalLength (300 s for the W reading type)
    in_set = MirrorReadingSet(mrid="C" * 32, time_period=DateTimeInterval(start=TODAY, duration=900),
                              readings=[Reading(value=1), Reading(value=2), Reading(value=3)])
    assert c.post(f"/mup/{upt}", data=codec.render(_mmr(W_MRID, None, [in_set]))).status_code == 201
    assert [(r.start, r.duration) for r in _rows(database, metering.Reading)] == [
        (TODAY, 300), (TODAY + 300, 300), (TODAY + 600, 300)]
    # a bare Reading: at lastUpdateTime, lasting intervalLength
    bare = _mmr(W_MRID, None, last_update_time=TODAY + 3600, reading=Reading(value=9))
    assert c.post(f"/mup/{upt}", data=codec.render(bare)).status_code == 201
    assert (TODAY + 3600, 300, 9) in [(r.start, r.duration, r.value) for r in _rows(database, metering.Reading)]
    # without lastUpdateTime: the server's clock; the var reading type has no intervalLength: 0 s
    resp = c.post(f"/mup/{upt}", data=codec.render(_mmr(VAR_MRID, None, reading=Reading(value=4))))
    assert resp.status_code == 201
    (var,) = _rows(database, metering.Reading, meter_reading_id=_mr_ids(database, upt)[VAR_MRID])
    assert var.duration == 0 and abs(var.start - int(time.time())) < 60
    # in a set without intervalLength: refused
    resp = c.post(f"/mup/{upt}", data=codec.render(_mmr(VAR_MRID, None, [in_set])))
    assert resp.status_code == 400


def test_meter_reading_limit(world, cast, client_for, database, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(mup_service, "MAX_METER_READINGS_PER_USAGE_POINT", 2)
    c = client_for(cast["owner"])
    upt = _create(c, cast["owner"].lfdi)
    resp = c.post(f"/mup/{upt}", data=codec.render(_mmr("D" * 32, RT_W)))
    assert resp.status_code == 400 and _reason(resp) == 2
    assert len(_rows(database, metering.MeterReading)) == 2


def test_description_and_version_of_a_meter_reading_follow_the_posts(world, cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    upt = _create(c, cast["owner"].lfdi)
    assert c.post(f"/mup/{upt}", data=codec.render(_mmr(W_MRID, None, description="Real power", version=3))).status_code == 201
    mr = _mr_ids(database, upt)[W_MRID]
    got = codec.parse(c.get(f"/upt/{upt}/mr/{mr}").data, MeterReading)
    assert (got.description, got.version) == ("Real power", 3)


# ------------------------------------------------------------------------------ bad input


def _with(doc: MirrorMeterReading, **reading: Any) -> MirrorMeterReading:
    r = Reading(time_period=DateTimeInterval(start=TODAY, duration=300), value=1)
    return dataclasses.replace(doc, reading=dataclasses.replace(r, **reading))


BAD_READINGS = {
    "no value": _with(_mmr(), value=None),
    "touTier": _with(_mmr(), tou_tier=1),
    "consumptionBlock": _with(_mmr(), consumption_block=2),
    "a day ahead": _with(_mmr(), time_period=DateTimeInterval(start=NOW + 2 * DAY, duration=300)),
    "before 1970": _with(_mmr(), time_period=DateTimeInterval(start=-300, duration=300)),
    "duration too long": _with(_mmr(), time_period=DateTimeInterval(start=TODAY, duration=2**31)),
    "new mRID without ReadingType": _mmr("E" * 32, None, [_set(TODAY, [1])]),
    "ReadingType without uom": _mmr("E" * 32, dataclasses.replace(RT_W, uom=None), [_set(TODAY, [1])]),
}
BAD_BODIES = {
    "value beyond Int48": codec.render(_with(_mmr(), value=5)).replace(b"<value>5</value>", b"<value>140737488355329</value>"),
    "not hex quality": codec.render(_with(_mmr(), quality_flags="01")).replace(b"<qualityFlags>01</qualityFlags>", b"<qualityFlags>zz</qualityFlags>"),
    "MirrorUsagePoint instead": codec.render(_mup("AB" * 20)),
    "unknown element": b'<MirrorMeterReading xmlns="urn:ieee:std:2030.5:ns"><mRID>01</mRID><x/></MirrorMeterReading>',
    "no mRID": b'<MirrorMeterReading xmlns="urn:ieee:std:2030.5:ns"/>',
    "list without mRID": b'<MirrorMeterReadingList xmlns="urn:ieee:std:2030.5:ns" all="1" results="1"><MirrorMeterReading/></MirrorMeterReadingList>',
    "prefixed list, bad": b'<?xml version="1.0"?><!-- c --><s:MirrorMeterReadingList xmlns:s="urn:ieee:std:2030.5:ns" all="x" results="1"/>',
    "entity bomb": b'<!DOCTYPE x [<!ENTITY a "aaaa">]><MirrorMeterReading xmlns="urn:ieee:std:2030.5:ns"><mRID>&a;</mRID></MirrorMeterReading>',
    "truncated": b'<MirrorMeterReading xmlns="urn:ieee:std:2030.5:ns"><mRID>01',
    "empty": b"",
}


@pytest.mark.parametrize("body", [codec.render(b) for b in BAD_READINGS.values()] + list(BAD_BODIES.values()),
                         ids=list(BAD_READINGS) + list(BAD_BODIES))
def test_bad_readings_get_400_and_store_nothing(world, cast, client_for, database, sep2_schema, body: bytes) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    upt = _create(c, cast["owner"].lfdi)
    before = _counts(database)
    resp = c.post(f"/mup/{upt}", data=body)
    assert resp.status_code == 400, resp.headers.get("X-Error-Detail")
    sep2_schema(resp.data)
    assert _counts(database) == before


def test_a_prefixed_list_is_understood(world, cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    upt = _create(c, cast["owner"].lfdi)
    body = codec.render(MirrorMeterReadingList(mirror_meter_readings=[_mmr(W_MRID, None, [_set(TODAY, [5])])]))
    body = b'<?xml version="1.0" encoding="UTF-8"?>\n<!-- from a client -->' + body.replace(
        b"<MirrorMeterReadingList xmlns=", b"<m:MirrorMeterReadingList xmlns:m=").replace(
        b"</MirrorMeterReadingList>", b"</m:MirrorMeterReadingList>")
    # children stay in the default namespace, so declare it too
    body = body.replace(b'xmlns:m="urn:ieee:std:2030.5:ns"', b'xmlns:m="urn:ieee:std:2030.5:ns" xmlns="urn:ieee:std:2030.5:ns"')
    resp = c.post(f"/mup/{upt}", data=body)
    assert resp.status_code == 201, resp.headers.get("X-Error-Detail")
    assert [r.value for r in _rows(database, metering.Reading)] == [5]


BAD_MUPS = {
    "status 2": lambda lfdi: codec.render(_mup(lfdi, status=2)),
    "short deviceLFDI": lambda lfdi: codec.render(_mup(lfdi[:38])),
    "roleFlags too long": lambda lfdi: codec.render(_mup(lfdi)).replace(b"<roleFlags>49</roleFlags>", b"<roleFlags>000049</roleFlags>"),
    "no deviceLFDI": lambda lfdi: codec.render(_mup(lfdi)).replace(f"<deviceLFDI>{lfdi}</deviceLFDI>".encode(), b""),
    "reading without value": lambda lfdi: codec.render(_mup(lfdi, mmrs=[_with(_mmr(W_MRID, RT_W), value=None)])),
    "new reading without type": lambda lfdi: codec.render(_mup(lfdi, mmrs=[_mmr(W_MRID, None)])),
}


@pytest.mark.parametrize("make", BAD_MUPS.values(), ids=BAD_MUPS.keys())
def test_bad_mups_get_400_and_store_nothing(world, cast, client_for, database, make) -> None:  # noqa: ANN001
    resp = client_for(cast["owner"]).post("/mup", data=make(cast["owner"].lfdi))
    assert resp.status_code == 400, resp.headers.get("X-Error-Detail")
    assert _counts(database) == (0, 0, 0, 0)


def test_wrong_content_type_gets_415(world, cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    resp = c.post("/mup", data=codec.render(_mup(cast["owner"].lfdi)), content_type="application/json")
    assert resp.status_code == 415 and _reason(resp) == 0
    upt = _create(c, cast["owner"].lfdi)
    resp = c.post(f"/mup/{upt}", data=codec.render(_mmr(W_MRID, None, [_set(TODAY, [1])])), content_type="text/plain")
    assert resp.status_code == 415
    assert _rows(database, metering.Reading) == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/mup"), ("DELETE", "/mup"), ("PUT", "/mup/{u}"), ("DELETE", "/mup/{u}"), ("POST", "/upt"),
     ("PUT", "/upt/{u}"), ("POST", "/upt/{u}/mr"), ("DELETE", "/upt/{u}/mr/{m}"), ("PUT", "/upt/{u}/mr/{m}/rt"),
     ("POST", "/upt/{u}/mr/{m}/rs"), ("POST", "/upt/{u}/mr/{m}/rs/{d}/r"), ("DELETE", "/upt/{u}/mr/{m}/rs/{d}/r/0")],
)
def test_methods_the_resource_does_not_have_get_405(world, cast, client_for, database, method: str, path: str) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    upt = _create(c, cast["owner"].lfdi)
    path = path.format(u=upt, m=_mr_ids(database, upt)[W_MRID], d=TODAY // DAY)
    resp = c.open(method, path)
    assert resp.status_code == 405 and "GET" in resp.headers["Allow"] and _reason(resp) == 0
    assert ("POST" in resp.headers["Allow"]) == path.startswith("/mup")


# ---------------------------------------------------------------------------------- access


def test_who_may_post_a_mup(world, cast, client_for, database) -> None:  # noqa: ANN001
    lfdi = {k: cast[k].lfdi for k in ("owner", "other", "managed", "aggregator", "unregistered")}
    cases = [  # (caller, deviceLFDI, status)
        ("owner", "owner", 201), ("owner", "other", 403), ("owner", "managed", 403),
        ("aggregator", "managed", 201), ("aggregator", "owner", 403), ("aggregator", "aggregator", 403),
        ("managed", "managed", 204), ("other", "other", 201), ("unregistered", "unregistered", 403),
        ("unregistered", "owner", 403), ("aggregator", "unregistered", 403),
    ]
    for caller, target, status in cases:
        resp = client_for(cast[caller]).post("/mup", data=codec.render(_mup(lfdi[target])))
        assert resp.status_code == status, (caller, target, resp.headers.get("X-Error-Detail"))
        if status == 403:
            assert "Location" not in resp.headers and _reason(resp) == 1
    for refused in ("foreign", None):
        resp = client_for(cast[refused] if refused else None).post("/mup", data=codec.render(_mup(lfdi["owner"])))
        assert resp.status_code == 403
    devices = {r.device_id for r in _rows(database, metering.UsagePoint)}
    assert devices == {world["owner"], world["managed"], world["other"]}


def test_no_certificate_is_refused_before_the_body_is_read(world, client_for) -> None:  # noqa: ANN001
    assert client_for(None).post("/mup", data=b"<not xml", content_type="text/plain").status_code == 403
    assert client_for(None).post("/mup/1", data=b"<not xml", content_type="text/plain").status_code == 403


@pytest.fixture
def mirrored(world, cast, client_for, database):  # noqa: ANN001, ANN201
    """owner and managed each mirror a W and a var meter reading with two days of readings."""
    out = {}
    for who, poster, w, var in (("owner", "owner", W_MRID, VAR_MRID), ("managed", "aggregator", W2_MRID, VAR2_MRID)):
        c = client_for(cast[poster])
        upt = _create(c, cast[who].lfdi, mmrs=[_mmr(w, RT_W), _mmr(var, RT_VAR)])
        body = MirrorMeterReadingList(mirror_meter_readings=[
            _mmr(w, None, [_set(TODAY - DAY, [1, 2, 3]), _set(TODAY, [4, 5])]),
            _mmr(var, None, [_set(TODAY, [6])])])
        assert c.post(f"/mup/{upt}", data=codec.render(body)).status_code == 201
        mr = _mr_ids(database, upt)[w]
        day = TODAY // DAY
        out[who] = [f"/mup/{upt}", f"/upt/{upt}", f"/upt/{upt}/mr", f"/upt/{upt}/mr/{mr}", f"/upt/{upt}/mr/{mr}/rt",
                    f"/upt/{upt}/mr/{mr}/rs", f"/upt/{upt}/mr/{mr}/rs/{day}", f"/upt/{upt}/mr/{mr}/rs/{day}/r",
                    f"/upt/{upt}/mr/{mr}/rs/{day}/r/300"]
    return out


CALLERS = ["owner", "other", "aggregator", "managed", "unregistered", "foreign", None]


def _allowed(target: str, caller: str | None) -> int:
    if caller in ("foreign", None):
        return 403
    if target == "owner":
        return 200 if caller == "owner" else 404
    return 200 if caller in ("managed", "aggregator") else 404


@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: c or "no-cert")
@pytest.mark.parametrize("target", ["owner", "managed"])
def test_get_access_matrix(mirrored, cast, client_for, sep2_schema, target: str, caller: str | None) -> None:  # noqa: ANN001
    client = client_for(cast[caller] if caller else None)
    for path in mirrored[target]:
        resp = client.get(path)
        assert resp.status_code == _allowed(target, caller), (path, resp.headers.get("X-Error-Detail"))
        assert resp.content_type == "application/sep+xml"
        sep2_schema(resp.data)


@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: c or "no-cert")
@pytest.mark.parametrize("target", ["owner", "managed"])
def test_post_readings_access_matrix(mirrored, cast, client_for, database, target: str, caller: str | None) -> None:  # noqa: ANN001
    client = client_for(cast[caller] if caller else None)
    before = _counts(database)
    w = W_MRID if target == "owner" else W2_MRID
    resp = client.post(mirrored[target][0], data=codec.render(_mmr(w, None, [_set(TODAY + 3600, [42])])))
    expected = _allowed(target, caller)
    assert resp.status_code == (201 if expected == 200 else expected)
    assert _counts(database)[2] == before[2] + (1 if expected == 200 else 0)


def test_lists_show_only_what_the_caller_may_see(mirrored, cast, client_for) -> None:  # noqa: ANN001
    def lfdis(who: str, path: str, model: type) -> set[str]:
        doc = codec.parse(client_for(cast[who]).get(path + "?l=100").data, model)
        items = doc.mirror_usage_points if model is MirrorUsagePointList else doc.usage_points
        return {i.device_lfdi for i in items}

    for path, model in (("/mup", MirrorUsagePointList), ("/upt", UsagePointList)):
        assert lfdis("owner", path, model) == {cast["owner"].lfdi}
        assert lfdis("aggregator", path, model) == {cast["managed"].lfdi}
        assert lfdis("managed", path, model) == {cast["managed"].lfdi}
        assert lfdis("other", path, model) == set()
        assert lfdis("unregistered", path, model) == set()


# ---------------------------------------------------------------------- read side, walked


def test_walk_from_upt_down_to_one_reading(world, cast, client_for, database, sep2_schema) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    upt = _create(c, cast["owner"].lfdi, mmrs=[_mmr(W_MRID, RT_W, description="Real power"), _mmr(VAR_MRID, RT_VAR)])
    readings = [_set(TODAY - 2 * DAY, [7]), _set(TODAY - DAY, [8, 9]), _set(TODAY, list(range(288)))]
    assert c.post(f"/mup/{upt}", data=codec.render(_mmr(W_MRID, None, readings))).status_code == 201

    def get(path: str, model: type) -> Any:
        resp = c.get(path)
        assert resp.status_code == 200, (path, resp.headers.get("X-Error-Detail"))
        sep2_schema(resp.data)
        return codec.parse(resp.data, model)

    listing = get("/upt", UsagePointList)  # a bare GET: one entry
    assert (listing.all, listing.results, listing.poll_rate) == (1, 1, 900)
    (point,) = listing.usage_points
    assert point == UsagePoint(
        href=f"/upt/{upt}", mrid=MUP_MRID, description="DER", role_flags="49", service_category_kind=0, status=1,
        device_lfdi=cast["owner"].lfdi, meter_reading_list_link=point.meter_reading_list_link)
    assert get(point.href, UsagePoint) == point
    assert point.meter_reading_list_link.all == 2
    mrs = get(point.meter_reading_list_link.href + "?l=10", MeterReadingList)
    assert (mrs.all, mrs.results) == (2, 2)
    assert [m.mrid for m in mrs.meter_readings] == [VAR_MRID, W_MRID]  # mRID descending
    w = mrs.meter_readings[1]
    assert w.description == "Real power" and w.reading_type_link == w.href + "/rt"
    assert get(w.href, MeterReading) == w
    rt = get(w.reading_type_link, ReadingType)
    assert rt == dataclasses.replace(RT_W, href=w.reading_type_link)
    assert w.reading_set_list_link.all == 3
    sets = get(w.reading_set_list_link.href + "?l=10", ReadingSetList)
    assert [s.time_period.start for s in sets.reading_sets] == [TODAY, TODAY - DAY, TODAY - 2 * DAY]  # newest first
    today = sets.reading_sets[0]
    assert today.time_period == DateTimeInterval(start=TODAY, duration=DAY)
    assert today.href.endswith(f"/rs/{TODAY // DAY}")
    assert get(today.href, ReadingSet) == today
    assert len({s.mrid for s in sets.reading_sets}) == 3
    day = get(today.reading_list_link.href + "?l=288", ReadingList)
    assert (day.all, day.results) == (288, 288)
    assert [r.value for r in day.readings] == list(range(288))
    assert [r.time_period.start for r in day.readings] == [TODAY + 300 * i for i in range(288)]
    one = day.readings[5]
    assert one.href == today.href + "/r/1500" and one.quality_flags == "01"
    assert get(one.href, Reading) == one
    # paging and `a`
    page = get(today.reading_list_link.href + "?s=10&l=3", ReadingList)
    assert (page.all, page.results, [r.value for r in page.readings]) == (288, 3, [10, 11, 12])
    assert get(today.reading_list_link.href, ReadingList).results == 1  # the default limit
    after = get(today.reading_list_link.href + f"?a={TODAY + 1200}&l=500", ReadingList)
    assert (after.all, after.readings[0].value) == (284, 4)  # start ≥ a
    beyond = get(today.reading_list_link.href + "?s=288&l=10", ReadingList)
    assert (beyond.all, beyond.results, beyond.readings) == (288, 0, [])
    recent = get(w.reading_set_list_link.href + f"?a={TODAY - DAY + 5}&l=10", ReadingSetList)
    assert [s.time_period.start for s in recent.reading_sets] == [TODAY, TODAY - DAY]  # sets ending after a
    capped = get(today.reading_list_link.href + "?l=100000", ReadingList)
    assert capped.results == 288
    assert c.get(today.reading_list_link.href + "?l=ten").status_code == 400


@pytest.mark.parametrize("suffix", ["/rs/1", "/rs/{d}/r/86400", "/rs/{d}/r/1", "/rs/{d1}/r", "/rs/{d1}"])
def test_what_was_never_posted_is_not_found(world, cast, client_for, database, suffix: str) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    upt = _create(c, cast["owner"].lfdi, mmrs=[_mmr(W_MRID, RT_W, [_set(TODAY, [1])])])
    mr = _mr_ids(database, upt)[W_MRID]
    path = f"/upt/{upt}/mr/{mr}" + suffix.format(d=TODAY // DAY, d1=TODAY // DAY + 1)
    assert c.get(path).status_code == 404


def test_unknown_ids_are_not_found(world, cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    upt = _create(c, cast["owner"].lfdi)
    mr = _mr_ids(database, upt)[W_MRID]
    for path in ("/mup/999", "/upt/999", "/upt/999/mr", f"/upt/999/mr/{mr}", f"/upt/{upt}/mr/999", f"/upt/{upt}/mr/999/rt",
                 "/upt/2147483648", f"/upt/{upt}/mr/{mr}/rs/-1"):
        assert c.get(path).status_code == 404, path
    assert c.post("/mup/999", data=codec.render(_mmr(W_MRID, None))).status_code == 404


# -------------------------------------------------------------------------- domain: load_series


def test_load_series_scales_and_signs(world, cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    kw_type = dataclasses.replace(RT_W, power_of_ten_multiplier=3)  # values in kW
    tenths = dataclasses.replace(RT_W, power_of_ten_multiplier=-1, flow_direction=19)  # 0.1 W, reverse
    upt = _create(c, cast["owner"].lfdi, mmrs=[
        _mmr(W_MRID, kw_type, [_set(TODAY, [2, 5, -1])]),
        _mmr("F" * 32, tenths, [_set(TODAY + 300, [1234, 15])]),
        _mmr(VAR_MRID, RT_VAR, [_set(TODAY, [9, 9, 9])]),  # var: not power in W
        _mmr("E" * 32, dataclasses.replace(RT_W, phase=128), [_set(TODAY, [77])]),  # one phase only
        _mmr("D" * 32, dataclasses.replace(RT_W, data_qualifier=8), [_set(TODAY, [88])]),  # a maximum
    ])
    with database.read() as conn:
        starts, watts = metering.load_series(conn, world["owner"], TODAY, TODAY + DAY)
        assert starts.dtype == np.int64 and watts.dtype == np.float64
        # 2 kW; 5 kW − 123.4 W; −1 kW − 1.5 W
        assert starts.tolist() == [TODAY, TODAY + 300, TODAY + 600]
        assert watts.tolist() == [2000.0, 5000.0 - 123.4, -1000.0 - 1.5]
        # half-open window [t1, t2)
        starts, watts = metering.load_series(conn, world["owner"], TODAY + 300, TODAY + 600)
        assert (starts.tolist(), watts.tolist()) == ([TODAY + 300], [5000.0 - 123.4])
        # nothing there, or another device
        assert metering.load_series(conn, world["owner"], 0, 100)[0].size == 0
        assert metering.load_series(conn, world["other"], 0, NOW)[0].size == 0
        assert metering.load_series(conn, world["owner"], TODAY, TODAY + DAY, usage_point_id=upt + 99)[0].size == 0


def test_load_series_prefers_the_premises_meter(world, cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    _create(c, cast["owner"].lfdi, mrid="1" * 32, role_flags="49", mmrs=[_mmr(W_MRID, RT_W, [_set(TODAY, [100])])])
    site = _create(c, cast["owner"].lfdi, mrid="2" * 32, role_flags="03", mmrs=[_mmr(W_MRID, RT_W, [_set(TODAY, [250])])])
    with database.read() as conn:
        assert metering.load_series(conn, world["owner"], TODAY, TODAY + DAY)[1].tolist() == [250.0]
        der = site - 1
        assert metering.load_series(conn, world["owner"], TODAY, TODAY + DAY, usage_point_id=der)[1].tolist() == [100.0]


# ------------------------------------------------------------------------------ persistence


def test_ingest_bumps_the_metering_counter_only(world, cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    upt = _create(c, cast["owner"].lfdi)
    before = changes.read(database.engine)
    assert c.post(f"/mup/{upt}", data=codec.render(_mmr(W_MRID, None, [_set(TODAY, [1])]))).status_code == 201
    after = changes.read(database.engine)
    assert after.get("metering", 0) == before.get("metering", 0) + 1
    assert after.get(changes.SEP2, 0) == before.get(changes.SEP2, 0)
    # a refused POST bumps nothing
    assert c.post(f"/mup/{upt}", data=codec.render(_mmr("9" * 32, None))).status_code == 400
    assert changes.read(database.engine) == after


def test_a_post_is_seen_at_once_by_cached_gets(world, cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    upt = _create(c, cast["owner"].lfdi, mmrs=[_mmr(W_MRID, RT_W, [_set(TODAY, [1])])])
    mr = _mr_ids(database, upt)[W_MRID]
    path = f"/upt/{upt}/mr/{mr}/rs/{TODAY // DAY}/r?l=10"
    assert codec.parse(c.get(path).data, ReadingList).all == 1  # now cached
    assert c.post(f"/mup/{upt}", data=codec.render(_mmr(W_MRID, None, [_set(TODAY + 300, [2])]))).status_code == 201
    assert codec.parse(c.get(path).data, ReadingList).all == 2


def test_removing_the_end_device_removes_its_metering(world, cast, client_for, database) -> None:  # noqa: ANN001
    agg = client_for(cast["aggregator"])
    _create(agg, cast["managed"].lfdi, mmrs=[_mmr(W2_MRID, RT_W, [_set(TODAY, [1, 2])])])
    _create(client_for(cast["owner"]), cast["owner"].lfdi, mmrs=[_mmr(W_MRID, RT_W, [_set(TODAY, [3])])])
    mine = agg.get("/upt?l=10")
    assert codec.parse(mine.data, UsagePointList).all == 1
    assert agg.delete(f"/edev/{world['managed']}").status_code == 204
    assert _counts(database) == (1, 1, 1, 1)
    assert codec.parse(agg.get("/upt?l=10").data, UsagePointList).all == 0  # at once: GETs are not cached
    with database.transaction() as s:  # by plain SQL too: the database cascades
        s.execute(delete(Device).where(Device.id == world["owner"]))
    assert _counts(database) == (0, 0, 0, 0)


def test_metering_migration_goes_down_and_up(tmp_path) -> None:  # noqa: ANN001
    from sqlalchemy import inspect

    from server.db.session import Database

    tables = {"usage_points", "meter_readings", "readings", "reading_days"}
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        migrate.upgrade(db.engine, "0005")
        assert tables <= set(inspect(db.engine).get_table_names())
        with db.engine.connect() as conn:  # stored in key order, without a rowid
            sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'readings'").scalar_one()
        assert "WITHOUT ROWID" in sql
        migrate.downgrade(db.engine, "0004")
        assert not tables & set(inspect(db.engine).get_table_names())
        migrate.upgrade(db.engine)
    finally:
        db.dispose()


def test_random_requests_on_metering_routes_never_get_5xx(mirrored, cast, client_for) -> None:  # noqa: ANN001
    import random

    paths = mirrored["owner"] + mirrored["managed"]
    bodies = [b"", b"<", *(codec.render(b) for b in BAD_READINGS.values()), *BAD_BODIES.values(),
              codec.render(_mmr(W_MRID, None, [_set(TODAY, [2**47 - 1, -(2**47)])])),
              codec.render(_mup(cast["owner"].lfdi)), codec.render(_mup(cast["managed"].lfdi, status=255)),
              codec.render(_mmr("7" * 32, dataclasses.replace(RT_W, power_of_ten_multiplier=9, interval_length=2**32 - 1),
                                [MirrorReadingSet(mrid="1" * 32, time_period=DateTimeInterval(start=2**62, duration=1),
                                                  readings=[Reading(value=1)])])),
              codec.render(_mmr("7" * 32, dataclasses.replace(RT_W, power_of_ten_multiplier=9), [])).replace(
                  b"<powerOfTenMultiplier>9<", b"<powerOfTenMultiplier>127<")]
    rng = random.Random(20305)
    callers = [client_for(cast[k]) for k in ("owner", "aggregator", "other")] + [client_for(None)]
    failures = []
    for _ in range(400):
        path = rng.choice(paths + ["/mup", "/upt", "/upt/0/mr/0/rs/0/r/0"])
        path += rng.choice(["", "?l=5", "?s=²", "?a=99999999999999999999", "?a=1&l=500"])
        method = rng.choice(["GET", "HEAD", "POST", "PUT", "DELETE"])
        kw = {}
        if method in ("POST", "PUT"):
            kw = {"data": rng.choice(bodies), "content_type": rng.choice(["application/sep+xml", "text/plain"])}
        resp = rng.choice(callers).open(method, path, **kw)
        if resp.status_code >= 500:
            failures.append((method, path, kw.get("data", b"")[:60], resp.status_code))
    assert failures == []

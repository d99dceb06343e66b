"""The DER function set end to end: DERList and DER, the four documents a device PUTs and reads
back, who may do either, every domain rule refusing a PUT with nothing stored, the SI amounts kept
as columns, removal with the EndDevice, and the schema (models = migrations) on both databases."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import time
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from server.db import changes, migrate
from server.db import der as der_db
from server.db.models import Base, Device
from server.sep2 import codec
from server.sep2.der import (
    DER,
    ActivePower,
    ConnectStatusType,
    DERAvailability,
    DERCapability,
    DERList,
    DERSettings,
    DERStatus,
    InverterStatusType,
    OperationalModeStatusType,
    ReactivePower,
    StateOfChargeStatusType,
    StorageModeStatusType,
    VoltageRMS,
    WattHour,
)
from server.sep2.models import Error
from tests.builders import registered_cast

NOW = int(time.time())
DAY = 86_400

CAPABILITY = DERCapability(
    modes_supported="0050008C",
    rtg_max_charge_rate_w=ActivePower(multiplier=0, value=5000),
    rtg_max_discharge_rate_w=ActivePower(multiplier=0, value=5000),
    rtg_max_v=VoltageRMS(multiplier=-1, value=2640),
    rtg_max_w=ActivePower(multiplier=3, value=10),
    rtg_max_wh=WattHour(multiplier=1, value=1350),
    type=83,
)
SETTINGS = DERSettings(
    modes_enabled="0010008C",
    set_grad_w=100,
    set_max_charge_rate_w=ActivePower(multiplier=2, value=46),
    set_max_discharge_rate_w=ActivePower(multiplier=0, value=4600),
    set_max_w=ActivePower(multiplier=3, value=5),
    set_max_wh=WattHour(multiplier=1, value=1200),
    updated_time=NOW - 3600,
)
STATUS = DERStatus(
    gen_connect_status=ConnectStatusType(date_time=NOW - 60, value="07"),
    inverter_status=InverterStatusType(date_time=NOW - 60, value=4),
    operational_mode_status=OperationalModeStatusType(date_time=NOW - 600, value=2),
    reading_time=NOW - 10,
    state_of_charge_status=StateOfChargeStatusType(date_time=NOW - 10, value=5550),
    storage_mode_status=StorageModeStatusType(date_time=NOW - 30, value=1),
    stor_connect_status=ConnectStatusType(date_time=NOW - 60, value="1F"),
)
AVAILABILITY = DERAvailability(
    availability_duration=7200,
    max_charge_duration=4294967295,  # UInt32 max: the column must be BIGINT
    reading_time=NOW - 10,
    reserve_charge_percent=2500,
    reserve_percent=10000,
    stat_var_avail=ReactivePower(multiplier=2, value=35),
    stat_w_avail=ActivePower(multiplier=-1, value=-12345),
)

# suffix, sample document, table
DOCS = {
    "dercap": (CAPABILITY, der_db.DerCapability),
    "derg": (SETTINGS, der_db.DerSettings),
    "ders": (STATUS, der_db.DerStatus),
    "dera": (AVAILABILITY, der_db.DerAvailability),
}


def _reason(resp) -> int:  # noqa: ANN001
    return codec.parse(resp.data, Error).reason_code


def _canonical(doc: Any, href: str) -> Any:
    """What the server stores for `doc` PUT at `href`: its own href, no subscribable."""
    fields: dict[str, Any] = {"href": href}
    if any(f.name == "subscribable" for f in dataclasses.fields(doc)):
        fields["subscribable"] = None
    return dataclasses.replace(doc, **fields)


def _rows(database, table, device_id: int | None = None) -> list[Any]:  # noqa: ANN001
    stmt = select(table.__table__)
    if device_id is not None:
        stmt = stmt.where(table.device_id == device_id)
    with database.read() as conn:
        return conn.execute(stmt).all()


@pytest.fixture
def world(app, database, cast, client_for):  # noqa: ANN001, ANN201
    """owner and other registered by the operator; managed registered (in-band) by the aggregator."""
    return registered_cast(database, cast, client_for)


def _put_all(client, device_id: int) -> None:  # noqa: ANN001
    for suffix, (doc, _table) in DOCS.items():
        resp = client.put(f"/edev/{device_id}/der/1/{suffix}", data=codec.render(doc))
        assert resp.status_code == 204, (suffix, resp.headers.get("X-Error-Detail"))


# ------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", DOCS)
def test_put_then_get_returns_what_was_put(world, cast, client_for, database, sep2_schema, suffix: str) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    doc, table = DOCS[suffix]
    uri = f"/edev/{world['owner']}/der/1/{suffix}"
    assert c.get(uri).status_code == 404  # nothing reported yet
    resp = c.put(uri, data=codec.render(doc))
    assert resp.status_code == 204 and resp.data == b"" and "Content-Type" not in resp.headers
    got = c.get(uri)
    assert got.status_code == 200 and got.content_type == "application/sep+xml"
    sep2_schema(got.data)
    assert codec.parse(got.data, type(doc)) == _canonical(doc, uri)
    head = c.open("HEAD", uri)
    assert head.status_code == 200 and head.data == b""
    # a second PUT replaces (not merges) and is still 204
    assert c.put(uri, data=codec.render(doc)).status_code == 204
    (row,) = _rows(database, table)
    assert row.document == got.data.decode()


def test_a_put_replaces_the_whole_document(world, cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    uri = f"/edev/{world['owner']}/der/1/derg"
    assert c.put(uri, data=codec.render(SETTINGS)).status_code == 204
    smaller = DERSettings(set_grad_w=0, set_max_w=ActivePower(multiplier=0, value=3000), updated_time=NOW)
    assert c.put(uri, data=codec.render(smaller)).status_code == 204
    assert codec.parse(c.get(uri).data, DERSettings) == _canonical(smaller, uri)
    row = _rows(database, der_db.DerSettings)[0]
    assert (row.set_max_w, row.set_max_charge_rate_w, row.set_max_wh, row.updated_time) == (3000.0, None, None, NOW)


def test_href_and_subscribable_in_a_body_are_the_servers(world, cast, client_for) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    uri = f"/edev/{world['owner']}/der/1/ders"
    posted = dataclasses.replace(STATUS, href="/somewhere/else", subscribable=3)
    assert c.put(uri, data=codec.render(posted)).status_code == 204
    got = codec.parse(c.get(uri).data, DERStatus)
    assert (got.href, got.subscribable) == (uri, None)


def test_the_2013_namespace_is_accepted_and_stored_as_2018(world, cast, client_for, sep2_schema) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    uri = f"/edev/{world['owner']}/der/1/dera"
    old = codec.render(AVAILABILITY).replace(b"urn:ieee:std:2030.5:ns", b"http://ieee.org/2030.5")
    assert c.put(uri, data=old).status_code == 204
    got = c.get(uri)
    sep2_schema(got.data)
    assert b'xmlns="urn:ieee:std:2030.5:ns"' in got.data


def test_der_list_and_der_link_everything(world, cast, client_for, sep2_schema) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    dev = world["owner"]
    resp = c.get(f"/edev/{dev}/der")
    assert resp.status_code == 200
    sep2_schema(resp.data)
    listing = codec.parse(resp.data, DERList)
    assert (listing.href, listing.all, listing.results, listing.poll_rate) == (f"/edev/{dev}/der", 1, 1, 900)
    base = f"/edev/{dev}/der/1"
    expected = DER(
        href=base,
        der_availability_link=f"{base}/dera",
        der_capability_link=f"{base}/dercap",
        der_settings_link=f"{base}/derg",
        der_status_link=f"{base}/ders",
    )
    assert listing.ders == [expected]
    one = c.get(base)
    assert one.status_code == 200
    sep2_schema(one.data)
    assert codec.parse(one.data, DER) == expected
    # all four links, whether or not reported yet; each answers once reported
    for link in (expected.der_availability_link, expected.der_capability_link, expected.der_settings_link, expected.der_status_link):
        assert c.get(link).status_code == 404
    _put_all(c, dev)
    for link in (expected.der_availability_link, expected.der_capability_link, expected.der_settings_link, expected.der_status_link):
        assert c.get(link).status_code == 200
    # paging: the one DER is at index 0
    beyond = codec.parse(c.get(f"/edev/{dev}/der?s=1&l=10").data, DERList)
    assert (beyond.all, beyond.results, beyond.ders) == (1, 0, [])
    assert c.get(f"/edev/{dev}/der?l=ten").status_code == 400


@pytest.mark.parametrize("path", ["/der/2", "/der/0", "/der/2/derg", "/der/2/dercap"])
def test_there_is_only_der_1(world, cast, client_for, database, path: str) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    assert c.get(f"/edev/{world['owner']}{path}").status_code == 404
    if path.count("/") == 3:
        resp = c.put(f"/edev/{world['owner']}{path}", data=codec.render(SETTINGS if path.endswith("derg") else CAPABILITY))
        assert resp.status_code == 404
        assert _rows(database, der_db.DerSettings) == [] and _rows(database, der_db.DerCapability) == []


def test_unknown_end_device_is_404(world, cast, client_for) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    for path in ("/edev/999/der", "/edev/999/der/1", "/edev/999/der/1/derg"):
        assert c.get(path).status_code == 404
    assert c.put("/edev/999/der/1/derg", data=codec.render(SETTINGS)).status_code == 404


# ---------------------------------------------------------------------------------- access


CALLERS = ["owner", "other", "aggregator", "managed", "unregistered", "foreign", None]
PATHS = ["/der", "/der/1", "/der/1/dercap", "/der/1/derg", "/der/1/ders", "/der/1/dera"]


def _allowed(target: str, caller: str | None) -> int:
    if caller in ("foreign", None):
        return 403
    if target == "owner":
        return 200 if caller == "owner" else 404
    return 200 if caller in ("managed", "aggregator") else 404  # target "managed"


@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: c or "no-cert")
@pytest.mark.parametrize("target", ["owner", "managed"])
def test_get_access_matrix(world, cast, client_for, sep2_schema, target: str, caller: str | None) -> None:  # noqa: ANN001
    _put_all(client_for(cast[target]), world[target])
    client = client_for(cast[caller] if caller else None)
    for path in PATHS:
        resp = client.get(f"/edev/{world[target]}{path}")
        assert resp.status_code == _allowed(target, caller), (path, resp.headers.get("X-Error-Detail"))
        assert resp.content_type == "application/sep+xml"
        sep2_schema(resp.data)


@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: c or "no-cert")
@pytest.mark.parametrize("target", ["owner", "managed"])
def test_put_access_matrix(world, cast, client_for, database, target: str, caller: str | None) -> None:  # noqa: ANN001
    client = client_for(cast[caller] if caller else None)
    expected = _allowed(target, caller)
    for suffix, (doc, table) in DOCS.items():
        resp = client.put(f"/edev/{world[target]}/der/1/{suffix}", data=codec.render(doc))
        assert resp.status_code == (204 if expected == 200 else expected), suffix
        assert len(_rows(database, table, world[target])) == (1 if expected == 200 else 0)


def test_no_certificate_is_refused_before_the_body_is_read(world, client_for) -> None:  # noqa: ANN001
    resp = client_for(None).put(f"/edev/{world['owner']}/der/1/derg", data=b"<not xml", content_type="text/plain")
    assert resp.status_code == 403


# ------------------------------------------------------------------------------ validation


def _settings(**kw) -> DERSettings:  # noqa: ANN003
    return dataclasses.replace(SETTINGS, **kw)


def _w(value: int, multiplier: int = 0) -> ActivePower:
    return ActivePower(multiplier=multiplier, value=value)


# (suffix, invalid document, whether a DERCapability is stored first)
INVALID = {
    "rtgMaxW zero": ("dercap", dataclasses.replace(CAPABILITY, rtg_max_w=_w(0, 3)), False),
    "rtgMaxW negative": ("dercap", dataclasses.replace(CAPABILITY, rtg_max_w=_w(-1)), False),
    "rtgMaxChargeRateW negative": ("dercap", dataclasses.replace(CAPABILITY, rtg_max_charge_rate_w=_w(-1)), False),
    "rtgMaxDischargeRateW negative": ("dercap", dataclasses.replace(CAPABILITY, rtg_max_discharge_rate_w=_w(-5, 2)), False),
    "setMaxW zero": ("derg", _settings(set_max_w=_w(0)), False),
    "setMaxW negative": ("derg", _settings(set_max_w=_w(-5000)), False),
    "setMaxChargeRateW negative": ("derg", _settings(set_max_charge_rate_w=_w(-1)), False),
    "setMaxDischargeRateW negative": ("derg", _settings(set_max_discharge_rate_w=_w(-1, -3)), False),
    "updatedTime a day ahead": ("derg", _settings(updated_time=NOW + 2 * DAY), False),
    "setMaxW above rtgMaxW": ("derg", _settings(set_max_w=_w(10001)), True),
    "setMaxChargeRateW above rating": ("derg", _settings(set_max_charge_rate_w=_w(51, 2)), True),
    "setMaxDischargeRateW above rating": ("derg", _settings(set_max_discharge_rate_w=_w(5001)), True),
    "setMaxWh above rtgMaxWh": ("derg", _settings(set_max_wh=WattHour(multiplier=2, value=136)), True),
    "DERStatus readingTime a day ahead": ("ders", dataclasses.replace(STATUS, reading_time=NOW + 2 * DAY), False),
    "DERAvailability readingTime a day ahead": ("dera", dataclasses.replace(AVAILABILITY, reading_time=NOW + 2 * DAY), False),
}


@pytest.mark.parametrize(("suffix", "bad", "rated"), INVALID.values(), ids=INVALID.keys())
def test_each_rule_refuses_with_400_and_stores_nothing(world, cast, client_for, database, suffix, bad, rated) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    base = f"/edev/{world['owner']}/der/1"
    if rated:
        assert c.put(f"{base}/dercap", data=codec.render(CAPABILITY)).status_code == 204
    table = DOCS[suffix][1]
    # first PUT refused: nothing there
    resp = c.put(f"{base}/{suffix}", data=codec.render(bad))
    assert resp.status_code == 400 and _reason(resp) == 1, resp.headers.get("X-Error-Detail")
    assert _rows(database, table) == [] and c.get(f"{base}/{suffix}").status_code == 404
    # refused over a stored document: that one stays, row and document alike
    assert c.put(f"{base}/{suffix}", data=codec.render(DOCS[suffix][0])).status_code == 204
    before, body_before = _rows(database, table), c.get(f"{base}/{suffix}").data
    resp = c.put(f"{base}/{suffix}", data=codec.render(bad))
    assert resp.status_code == 400 and _reason(resp) == 1
    assert _rows(database, table) == before and c.get(f"{base}/{suffix}").data == body_before


ACCEPTED = {
    "settings above any rating when no capability is stored": ("derg", _settings(set_max_w=_w(32767, 9)), False),
    "setMaxW equal to rtgMaxW": ("derg", _settings(set_max_w=_w(10000)), True),
    "equal through different multipliers": ("derg", _settings(set_max_charge_rate_w=_w(5, 3)), True),
    "zero charge rate": ("derg", _settings(set_max_charge_rate_w=_w(0)), True),
    "readingTime an hour ahead": ("ders", dataclasses.replace(STATUS, reading_time=NOW + 3600), False),
    "readingTime long ago": ("dera", dataclasses.replace(AVAILABILITY, reading_time=0), False),
    "a capability below stored settings": ("dercap", dataclasses.replace(CAPABILITY, rtg_max_w=_w(1)), True),
}


@pytest.mark.parametrize(("suffix", "good", "rated"), ACCEPTED.values(), ids=ACCEPTED.keys())
def test_edges_that_are_accepted(world, cast, client_for, suffix, good, rated) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    base = f"/edev/{world['owner']}/der/1"
    if rated:
        assert c.put(f"{base}/dercap", data=codec.render(CAPABILITY)).status_code == 204
        assert c.put(f"{base}/derg", data=codec.render(SETTINGS)).status_code == 204
    resp = c.put(f"{base}/{suffix}", data=codec.render(good))
    assert resp.status_code == 204, resp.headers.get("X-Error-Detail")


def test_out_of_range_values_are_refused_by_type(world, cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    body = codec.render(STATUS).replace(b"<value>5550</value>", b"<value>10001</value>")
    assert b"10001" in body
    resp = c.put(f"/edev/{world['owner']}/der/1/ders", data=body)
    assert resp.status_code == 400 and _reason(resp) == 1
    assert _rows(database, der_db.DerStatus) == []


HOSTILE = {
    "entity bomb": b'<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><DERStatus xmlns="urn:ieee:std:2030.5:ns"><readingTime>&b;</readingTime></DERStatus>',
    "xxe": b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><DERStatus xmlns="urn:ieee:std:2030.5:ns"><readingTime>&e;</readingTime></DERStatus>',
    "truncated": b'<DERStatus xmlns="urn:ieee:std:2030.5:ns"><readingTime>1',
    "wrong namespace": b'<DERStatus xmlns="urn:x"><readingTime>1</readingTime></DERStatus>',
    "wrong document": codec.render(AVAILABILITY),
    "missing required": b'<DERStatus xmlns="urn:ieee:std:2030.5:ns"/>',
    "unknown element": b'<DERStatus xmlns="urn:ieee:std:2030.5:ns"><readingTime>1</readingTime><x>1</x></DERStatus>',
    "empty": b"",
    "binary": bytes(range(256)),
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_bodies_get_400_and_store_nothing(world, cast, client_for, database, sep2_schema, body: bytes) -> None:  # noqa: ANN001
    resp = client_for(cast["owner"]).put(f"/edev/{world['owner']}/der/1/ders", data=body)
    assert resp.status_code == 400
    sep2_schema(resp.data)
    assert _rows(database, der_db.DerStatus) == []


def test_wrong_content_type_gets_415(world, cast, client_for, database) -> None:  # noqa: ANN001
    resp = client_for(cast["owner"]).put(
        f"/edev/{world['owner']}/der/1/derg", data=codec.render(SETTINGS), content_type="application/json"
    )
    assert resp.status_code == 415 and _reason(resp) == 0
    assert _rows(database, der_db.DerSettings) == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/der"), ("POST", "/der"), ("DELETE", "/der"), ("PUT", "/der/1"), ("POST", "/der/1"),
     ("DELETE", "/der/1"), ("POST", "/der/1/dercap"), ("DELETE", "/der/1/derg"), ("POST", "/der/1/ders"),
     ("DELETE", "/der/1/dera"), ("PATCH", "/der/1/derg"), ("OPTIONS", "/der/1/derg")],
)
def test_methods_the_resource_does_not_have_get_405(world, cast, client_for, method: str, path: str) -> None:  # noqa: ANN001
    resp = client_for(cast["owner"]).open(method, f"/edev/{world['owner']}{path}")
    assert resp.status_code == 405 and "GET" in resp.headers["Allow"]
    assert ("PUT" in resp.headers["Allow"]) == path.startswith("/der/1/")
    assert _reason(resp) == 0


# ------------------------------------------------------------------------------ persistence


def test_domain_columns_hold_si_amounts(world, cast, client_for, database) -> None:  # noqa: ANN001
    _put_all(client_for(cast["owner"]), world["owner"])
    dev = world["owner"]
    (cap,) = _rows(database, der_db.DerCapability, dev)
    assert (cap.der_type, cap.rtg_max_w, cap.rtg_max_charge_rate_w, cap.rtg_max_discharge_rate_w, cap.rtg_max_wh) == (
        83, 10000.0, 5000.0, 5000.0, 13500.0)
    (st,) = _rows(database, der_db.DerSettings, dev)
    assert (st.set_max_w, st.set_max_charge_rate_w, st.set_max_discharge_rate_w, st.set_max_wh, st.updated_time) == (
        5000.0, 4600.0, 4600.0, 12000.0, NOW - 3600)  # setMaxW 5 × 10^3 W
    (ss,) = _rows(database, der_db.DerStatus, dev)
    assert (ss.reading_time, ss.state_of_charge_percent, ss.operational_mode, ss.storage_mode, ss.inverter_status,
            ss.gen_connect_status, ss.stor_connect_status) == (NOW - 10, 55.5, 2, 1, 4, 0x07, 0x1F)
    (av,) = _rows(database, der_db.DerAvailability, dev)
    assert (av.reading_time, av.stat_w_avail_w, av.stat_var_avail_var, av.reserve_percent, av.reserve_charge_percent,
            av.max_charge_duration_s, av.availability_duration_s) == (NOW - 10, -1234.5, 3500.0, 100.0, 25.0, 4294967295, 7200)
    for row in (cap, st, ss, av):
        assert (row.der_id, row.received_time > NOW - 60) == (1, True)


def test_operators_read_every_devices_records(world, cast, client_for, database) -> None:  # noqa: ANN001
    from server.scope import Role, Scope

    _put_all(client_for(cast["owner"]), world["owner"])
    _put_all(client_for(cast["aggregator"]), world["managed"])
    with database.read() as conn:
        assert [r.device_id for r in der_db.records(conn, Scope.operator(), der_db.DerSettings)] == sorted(
            [world["owner"], world["managed"]])
        agg = Scope(Role.AGGREGATOR, cast["aggregator"].lfdi)
        assert [r.device_id for r in der_db.records(conn, agg, der_db.DerSettings)] == [world["managed"]]
        assert der_db.record(conn, Scope(Role.DEVICE, cast["other"].lfdi), der_db.DerSettings, world["owner"], 1) is None
        assert der_db.records(conn, Scope(Role.DEVICE), der_db.DerSettings) == []


def test_removing_the_end_device_removes_its_der_data(world, cast, client_for, database) -> None:  # noqa: ANN001
    agg = client_for(cast["aggregator"])
    _put_all(agg, world["managed"])
    _put_all(client_for(cast["owner"]), world["owner"])
    assert agg.delete(f"/edev/{world['managed']}").status_code == 204
    for _suffix, (_doc, table) in DOCS.items():
        assert _rows(database, table, world["managed"]) == []
        assert len(_rows(database, table, world["owner"])) == 1  # nobody else's
    assert agg.get(f"/edev/{world['managed']}/der/1/derg").status_code == 404


def test_the_database_enforces_the_device_key(world, database) -> None:  # noqa: ANN001
    """SQLite only enforces foreign keys with PRAGMA foreign_keys=ON: a row for no device is
    refused, and a device deleted by plain SQL (not through the ORM) takes its rows along."""
    row = {"device_id": 999_999, "der_id": 1, "document": "<x/>", "received_time": 0, "reading_time": 0}
    with pytest.raises(IntegrityError), database.transaction() as s:
        s.execute(insert(der_db.DerStatus).values(**row))
    with database.transaction() as s:
        s.execute(insert(der_db.DerStatus).values(**{**row, "device_id": world["other"]}))
    with database.transaction() as s:
        s.execute(delete(Device).where(Device.id == world["other"]))
    assert _rows(database, der_db.DerStatus) == []


def test_concurrent_first_puts_store_one_row(world, cast, client_for, database) -> None:  # noqa: ANN001
    from concurrent.futures import ThreadPoolExecutor

    uri = f"/edev/{world['owner']}/der/1/ders"
    bodies = [codec.render(dataclasses.replace(STATUS, reading_time=NOW - i)) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda b: client_for(cast["owner"]).put(uri, data=b).status_code, bodies))
    assert codes == [204] * 8
    assert len(_rows(database, der_db.DerStatus)) == 1


def test_a_put_is_seen_at_once_by_cached_gets_and_bumps_the_counter(world, cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    uri = f"/edev/{world['owner']}/der/1/derg"
    assert c.put(uri, data=codec.render(SETTINGS)).status_code == 204
    assert codec.parse(c.get(uri).data, DERSettings).set_max_w == _w(5, 3)  # now cached
    before = changes.read(database.engine)
    assert c.put(uri, data=codec.render(_settings(set_max_w=_w(7, 3)))).status_code == 204
    after = changes.read(database.engine)  # its own family: the devices' poll documents stay cached
    assert (after["der"], after[changes.SEP2]) == (before["der"] + 1, before[changes.SEP2])
    assert codec.parse(c.get(uri).data, DERSettings).set_max_w == _w(7, 3)
    # a refused PUT bumps nothing
    assert c.put(uri, data=codec.render(_settings(set_max_w=_w(0)))).status_code == 400
    assert changes.read(database.engine) == after


# ------------------------------------------------------------------------------- migrations


def _all_tables_imported() -> None:
    import server.db

    for m in pkgutil.walk_packages(server.db.__path__, "server.db."):
        if ".migrations" not in m.name:
            importlib.import_module(m.name)


# ix_der_events_end indexes an expression (start + duration): neither SQLAlchemy's reflection nor
# Alembic's comparison handles those, so it is left out of the comparison, by name of the warning.
@pytest.mark.filterwarnings("ignore:.*expression-based index.*")
def test_models_and_migrations_agree(database) -> None:  # noqa: ANN001
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from sqlalchemy import inspect

    _all_tables_imported()
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        # autogenerate does not compare ON DELETE: check every foreign key's action by hand
        reflected = {
            (t, tuple(fk["constrained_columns"]), (fk.get("options") or {}).get("ondelete"))
            for t in inspect(conn).get_table_names()
            for fk in inspect(conn).get_foreign_keys(t)
        }
    declared = {
        (t.name, tuple(c.name for c in fk.columns), fk.ondelete)
        for t in Base.metadata.sorted_tables
        for fk in t.foreign_key_constraints
    }
    assert diff == []
    assert reflected == declared
    assert migrate.current_revision(database.engine) == migrate.head_revision()


def test_der_migration_goes_down_and_up(tmp_path) -> None:  # noqa: ANN001
    from sqlalchemy import inspect

    from server.db.session import Database

    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        migrate.upgrade(db.engine, "0002")
        assert {t.__tablename__ for t in der_db.KINDS} <= set(inspect(db.engine).get_table_names())
        migrate.downgrade(db.engine, "0001")
        assert not {t.__tablename__ for t in der_db.KINDS} & set(inspect(db.engine).get_table_names())
        migrate.upgrade(db.engine)
        with db.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(der_db.DerSettings)).scalar_one() == 0
    finally:
        db.dispose()


def test_random_requests_on_der_routes_never_get_5xx(world, cast, client_for) -> None:  # noqa: ANN001
    import random

    ids = ["1", "0", "2", "-1", "2147483647", "2147483648", "abc", "%00", str(world["owner"]), str(world["managed"])]
    templates = ["/edev/{id}/der", "/edev/{id}/der/{id}", "/edev/{id}/der/{id}/dercap", "/edev/{id}/der/{id}/derg",
                 "/edev/{id}/der/{id}/ders", "/edev/{id}/der/{id}/dera", "/edev/{id}/der/{id}/x"]
    bodies = [b"", b"<", *(codec.render(doc) for doc, _ in DOCS.values()), *HOSTILE.values(),
              codec.render(_settings(set_max_w=_w(32767, 9))), codec.render(_settings(set_max_w=_w(1, -9))),
              codec.render(_settings(set_max_w=_w(1, 9))).replace(b"<multiplier>9<", b"<multiplier>127<"),
              codec.render(dataclasses.replace(STATUS, reading_time=2**63 - 1)),
              codec.render(dataclasses.replace(CAPABILITY, rtg_max_w=_w(32767, 9), rtg_max_wh=WattHour(multiplier=9, value=65535)))]
    rng = random.Random(20305)
    callers = [client_for(cast[k]) for k in ("owner", "aggregator", "other")] + [client_for(None)]
    failures = []
    for _ in range(600):
        path = rng.choice(templates).replace("{id}", rng.choice(ids), 1).replace("{id}", rng.choice(ids[:4]))
        path += rng.choice(["", "?l=5", "?s=²", "?l=-1", "?a=1"])
        method = rng.choice(["GET", "HEAD", "PUT", "POST", "DELETE"])
        kw = {}
        if method in ("PUT", "POST"):
            kw = {"data": rng.choice(bodies), "content_type": rng.choice(["application/sep+xml", "text/plain"])}
        resp = rng.choice(callers).open(method, path, **kw)
        if resp.status_code >= 500:
            failures.append((method, path, kw.get("data", b"")[:60], resp.status_code))
    assert failures == []


def test_extreme_amounts_are_stored_on_every_database(world, cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    base = f"/edev/{world['owner']}/der/1"
    # PowerOfTenMultiplierType's range is -9…9 (the schema's "SHALL be supported"; server/sep2/types.py)
    huge = dataclasses.replace(CAPABILITY, rtg_max_w=_w(32767, 9), rtg_max_wh=WattHour(multiplier=9, value=65535))
    tiny = _settings(set_max_w=_w(1, -9), set_max_charge_rate_w=_w(0, -9), updated_time=-(2**63))
    assert c.put(f"{base}/dercap", data=codec.render(huge)).status_code == 204
    assert c.put(f"{base}/derg", data=codec.render(tiny)).status_code == 204
    assert codec.parse(c.get(f"{base}/dercap").data, DERCapability) == _canonical(huge, f"{base}/dercap")
    (cap,) = _rows(database, der_db.DerCapability)
    (st,) = _rows(database, der_db.DerSettings)
    assert (cap.rtg_max_w, cap.rtg_max_wh) == (32767e9, 65535e9)
    assert (st.set_max_w, st.updated_time) == (1e-9, -(2**63))

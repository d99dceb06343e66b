"""Settlement through the admin API (/admin/api/v1/flex/…/settle, …/settlement[.csv|.png],
…/settlement/devices/{d}, …/enrollments/{e}/settlement[.csv]): hand-computed figures read back
from the stored runs, CSV that adds up to the stored money, a trace whose readings reproduce the
stored kW, versions after late readings, and every refusal a 4xx problem+json."""

from __future__ import annotations

import csv
import io
import struct
from collections import defaultdict
from datetime import datetime
from decimal import Decimal

import pytest

from tests.builders import (DAY, END, EVENT_W, FLOWS_104, GROSS, KEY, SETTLED_AT, START, deliver, make_world,
                                    mirror)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def ok(resp, status: int = 200):  # noqa: ANN001, ANN201
    assert resp.status_code == status, (resp.status_code, resp.data[:500])
    return resp.get_json() if resp.mimetype == "application/json" else resp


def problem(resp, status: int) -> str:  # noqa: ANN001
    assert resp.status_code == status, (resp.status_code, resp.data[:500])
    assert resp.content_type == "application/problem+json"
    detail = resp.get_json()["detail"]
    assert detail
    return detail


def seconds(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


@pytest.fixture
def clock(monkeypatch):  # noqa: ANN001, ANN201
    """The admin API's clock (settle uses it); starts just after the program's settlement delay."""
    import server.api.admin_flex as views

    def set_to(t: int) -> None:
        monkeypatch.setattr(views, "now", lambda: t)

    set_to(SETTLED_AT)
    return set_to


@pytest.fixture
def world(app, database, clock):  # noqa: ANN001, ANN201
    w = make_world(database)
    w["p"] = f"/flex/programs/{w['program']}"
    w["w"] = f"{w['p']}/windows/{KEY}"
    return w


@pytest.fixture
def settled(operator, world, database):  # noqa: ANN001, ANN201
    deliver(database, world)
    out = ok(operator("POST", f"{world['w']}/settle"))
    assert (out["unchanged"], out["version"], out["reason"]) == (False, 1, "operator")
    return world


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def average_kw(readings: list[dict], t: int, dt: int) -> float:
    """Time-weighted average of raw reading rows over [t, t + dt), kW (what settlement reads)."""
    energy = covered = 0.0
    for r in readings:
        a, b = max(seconds(r["start"]), t), min(seconds(r["start"]) + r["duration"], t + dt)
        if b > a:
            energy += r["watts"] * (b - a)
            covered += b - a
    assert covered >= 0.9 * dt
    return energy / covered / 1000


# ------------------------------------------------------------------------------------ settling


def test_settle_stores_a_version_and_running_it_again_changes_nothing(operator, world, database) -> None:  # noqa: ANN001
    deliver(database, world)
    out = ok(operator("POST", f"{world['w']}/settle"))
    s = out["settlement"]
    assert (out["unchanged"], out["version"], out["reason"]) == (False, 1, "operator")
    assert (s["requested_kwh"], s["cleared_kwh"], s["delivered_kwh"], s["credited_kwh"]) == (12.0, 12.0, 12.0, 10.0)
    assert (s["gross_minor"], s["total_minor"]) == (256, 256)
    again = ok(operator("POST", f"{world['w']}/settle"))
    assert (again["unchanged"], again["version"], again["reason"]) == (True, 1, "operator")
    assert again["settlement"] == s  # identical numbers: the stored run, nothing new written
    assert [v["version"] for v in ok(operator("GET", f"{world['w']}/settlement"))["versions"]] == [1]


def test_settle_before_the_end_or_unpublished_is_409(operator, world, clock) -> None:  # noqa: ANN001
    clock(END - 1)
    assert "can be settled after" in problem(operator("POST", f"{world['w']}/settle"), 409)
    clock(END + DAY + 3600)
    assert "not published" in problem(operator("POST", f"{world['p']}/windows/2026-12-01/settle"), 409)
    assert "no window" in problem(operator("POST", f"{world['p']}/windows/1999-01-01/settle"), 404)
    assert problem(operator("POST", f"/flex/programs/999/windows/{KEY}/settle"), 404)
    assert "has not been settled" in problem(operator("GET", f"{world['w']}/settlement"), 404)


# ------------------------------------------------------------------------------------ a window


def test_window_report_shows_the_stored_figures(operator, settled) -> None:  # noqa: ANN001
    r = ok(operator("GET", f"{settled['w']}/settlement"))
    assert (r["program"], r["window"], r["version"], r["current"], r["currency"], r["paid"]) == \
        ("Peak Saver", KEY, 1, True, "USD", "2.56")
    assert r["local"] == "Mon 30 Nov 2026 16:00–18:00 EST"
    s = r["summary"]
    assert [(iv["requested_kw"], iv["cleared_kw"], iv["delivered_kw"], iv["credited_kw"]) for iv in s["intervals"]] \
        == [(6.0, 6.0, 6.0, 5.0)] * 8
    rows = r["devices"]["rows"]
    assert r["devices"]["all"] == 3
    assert [(d["device_id"], d["lfdi"], d["customer"], d["enrollment_id"], d["method"]) for d in rows] == [
        (dev, lfdi, f"customer-{i}", enr, "x_of_y")
        for i, (dev, lfdi, enr) in enumerate(zip(settled["devices"], settled["lfdis"], settled["enrollments"]))]
    assert [(d["energy_kwh"], d["performance"], d["gross_minor"], d["total_minor"]) for d in rows] == \
        [(4.0, 1.0, 104, 104), (2.0, 0.5, 48, 48), (4.0, 1.0, 104, 104)]
    assert {f["role"]: f["amount_minor"] for f in rows[0]["flows"]} == FLOWS_104
    assert sum(f["amount_minor"] for d in rows for f in d["flows"]) == s["total_minor"] == 256
    [v] = r["versions"]
    assert (v["version"], v["reason"], v["created"], v["superseded"]) == (1, "operator", "2026-11-30T23:10:00Z", None)


def test_device_rows_come_in_pages(operator, settled) -> None:  # noqa: ANN001
    page = ok(operator("GET", f"{settled['w']}/settlement?start=1&limit=1"))["devices"]
    assert (page["all"], page["start"], page["limit"]) == (3, 1, 1)
    assert [d["device_id"] for d in page["rows"]] == [settled["devices"][1]]
    assert ok(operator("GET", f"{settled['w']}/settlement?start=5"))["devices"]["rows"] == []
    assert ok(operator("GET", f"{settled['w']}/settlement?limit=99999"))["devices"]["limit"] == 1000


def test_csv_adds_up_to_the_stored_money(operator, settled) -> None:  # noqa: ANN001
    resp = ok(operator("GET", f"{settled['w']}/settlement.csv"))
    assert resp.mimetype == "text/csv"
    assert f'filename="settlement-{settled["program"]}-{KEY}.csv"' in resp.headers["Content-Disposition"]
    text = resp.get_data(as_text=True)
    assert text.splitlines()[0] == ("window,version,device_id,lfdi,customer,interval_start,baseline_kw,actual_kw,"
                                    "reduction_kw,setpoint_kw,price_per_kwh,credited_kwh,amount_minor,currency,line")
    rows = csv_rows(text)
    assert len(rows) == 3 * 8
    assert sum(int(r["amount_minor"]) for r in rows) == 256
    by_device: dict[int, int] = defaultdict(int)
    for r in rows:
        by_device[int(r["device_id"])] += int(r["amount_minor"])
    assert [by_device[d] for d in settled["devices"]] == list(GROSS)
    assert sum(Decimal(r["credited_kwh"]) for r in rows) == Decimal(10)
    first = rows[8]  # device 1, 16:00 local: baseline 3, actual 2, reduction 1 of 2 asked, 0.25 kWh → 6.5 c → 6 c
    assert (first["interval_start"], first["baseline_kw"], first["actual_kw"], first["reduction_kw"],
            first["setpoint_kw"], first["price_per_kwh"], first["credited_kwh"], first["amount_minor"],
            first["currency"], first["lfdi"]) == \
        ("2026-11-30T21:00:00Z", "3.0", "2.0", "1.0", "2.0", "0.26", "0.25", "6", "USD", settled["lfdis"][1])


def test_csv_of_a_waived_device_still_adds_up(operator, app, database, clock) -> None:  # noqa: ANN001
    """Charges above earnings are waived (net negative not allowed): a "waived" row keeps the sum."""
    w = make_world(database, incentive={"kind": "pay_as_clear", "under_delivery_per_kwh": 1.0})
    deliver(database, w, watts=(4000, 2000, 0))  # device 0 drew 1 kW more than its baseline
    ok(operator("POST", f"/flex/programs/{w['program']}/windows/{KEY}/settle"))
    report = ok(operator("GET", f"/flex/programs/{w['program']}/windows/{KEY}/settlement"))
    rows = csv_rows(operator("GET", f"/flex/programs/{w['program']}/windows/{KEY}/settlement.csv").get_data(as_text=True))
    waived = [r for r in rows if r["line"] == "waived"]
    # device 0: 8 intervals × 3 kW short × 0.25 h × 1 USD/kWh = 600 c charged, nothing earned;
    # device 1: earned 8 × 6 c = 48, charged 8 × 1 kW short × 0.25 h × 1 USD/kWh = 200: net −152;
    # both waived to 0; device 2 delivered more than asked: 104
    assert [(int(r["device_id"]), r["interval_start"], int(r["amount_minor"])) for r in waived] == \
        [(w["devices"][0], "", 600), (w["devices"][1], "", 152)]
    net: dict[int, int] = defaultdict(int)
    for r in rows:
        net[int(r["device_id"])] += int(r["amount_minor"])
    assert [net[d] for d in w["devices"]] == [0, 0, 104]
    assert sum(net.values()) == report["summary"]["gross_minor"] == 104


def test_png_of_requested_vs_delivered(operator, settled) -> None:  # noqa: ANN001
    resp = ok(operator("GET", f"{settled['w']}/settlement.png"))
    assert resp.mimetype == "image/png"
    data = resp.get_data()
    assert data[:8] == PNG_SIGNATURE and struct.unpack(">II", data[16:24]) == (960, 600)
    assert ok(operator("GET", f"{settled['w']}/settlement.png?version=1")).get_data() == data  # same run, same bytes


# ------------------------------------------------------------------------------------ a device's trace


def test_trace_readings_reproduce_the_stored_kw(operator, settled) -> None:  # noqa: ANN001
    dev = settled["devices"][1]
    t = ok(operator("GET", f"{settled['w']}/settlement/devices/{dev}"))
    assert (t["device"]["device_id"], t["device"]["lfdi"], t["device"]["gross_minor"]) == (dev, settled["lfdis"][1], 48)
    assert t["readings_changed"] is False and t["readings_check"]["compared"] == "digest"
    detail = t["detail"]
    assert detail["days_used"] == ["2026-11-29", "2026-11-28", "2026-11-27"]
    assert t["readings_check"]["meter_reading_ids_now"] == detail["readings"]["meter_reading_ids"]
    event, *days = t["spans"]
    assert (event["what"], event["start"], event["end"]) == ("event", "2026-11-30T21:00:00Z", "2026-11-30T23:00:00Z")
    assert [d["date"] for d in days] == detail["days_used"]
    assert {r["meter_reading_id"] for sp in t["spans"] for r in sp["readings"]} == set(detail["readings"]["meter_reading_ids"])
    for j, iv in enumerate(detail["intervals"]):
        at = seconds(iv["start"])
        assert at == START + 900 * j
        assert average_kw(event["readings"], at, 900) == iv["actual_kw"] == iv["readings_kw"] == EVENT_W[1] / 1000
        # the baseline: the mean of the days used at the same local time (an x_of_y baseline)
        same_time = [average_kw(d["readings"], seconds(d["start"]) + (at - START), 900) for d in days]
        assert sum(same_time) / len(same_time) == iv["baseline_kw"] == 3.0
        assert iv["baseline_kw"] - iv["actual_kw"] == iv["reduction_kw"]
        assert [ln["amount_minor"] for ln in iv["lines"]] == [6]


def test_late_readings_show_in_the_trace_then_make_a_new_version(operator, settled, database, clock) -> None:  # noqa: ANN001
    dev, base = settled["devices"][1], settled["w"]
    mirror(database, settled["lfdis"][1], START, [3000] * 8, now=END + 3000)  # device 1 did nothing after all
    t = ok(operator("GET", f"{base}/settlement/devices/{dev}"))
    assert t["readings_changed"] is True
    assert t["readings_check"]["digest_now"] != t["readings_check"]["stored_digest"]
    assert t["detail"]["intervals"][0]["actual_kw"] == 2.0  # the stored figure is never changed …
    assert t["detail"]["intervals"][0]["readings_kw"] == 3.0  # … the readings now say otherwise

    clock(END + 3600)
    out = ok(operator("POST", f"{base}/settle"))
    assert (out["unchanged"], out["version"], out["reason"]) == (False, 2, "operator")
    assert out["settlement"]["changes"] == {"previous_version": 1, "delivered_kwh": [12.0, 10.0],
                                            "gross_minor": [256, 208], "total_minor": [256, 208]}
    assert ok(operator("GET", f"{base}/settlement/devices/{dev}"))["readings_changed"] is False
    old = ok(operator("GET", f"{base}/settlement/devices/{dev}?version=1"))
    assert (old["version"], old["current"], old["device"]["gross_minor"], old["readings_changed"]) == (1, False, 48, True)

    r = ok(operator("GET", f"{base}/settlement"))
    assert (r["version"], r["summary"]["gross_minor"]) == (2, 208)
    assert [(v["version"], v["reason"], v["superseded"]) for v in r["versions"]] == \
        [(1, "operator", "2026-12-01T00:00:00Z"), (2, "operator", None)]  # END + 1 h
    v1 = ok(operator("GET", f"{base}/settlement?version=1"))
    assert (v1["version"], v1["current"], v1["summary"]["gross_minor"]) == (1, False, 256)
    assert sum(int(x["amount_minor"]) for x in
               csv_rows(operator("GET", f"{base}/settlement.csv?version=1").get_data(as_text=True))) == 256
    assert sum(int(x["amount_minor"]) for x in
               csv_rows(operator("GET", f"{base}/settlement.csv").get_data(as_text=True))) == 208


# ------------------------------------------------------------------------------------ an enrollment


def test_enrollment_report_and_csv(operator, settled) -> None:  # noqa: ANN001
    enr = settled["enrollments"][0]
    r = ok(operator("GET", f"{settled['p']}/enrollments/{enr}/settlement"))
    assert (r["enrollment_id"], r["device_id"], r["lfdi"], r["customer"]) == \
        (enr, settled["devices"][0], settled["lfdis"][0], "customer-0")
    [w] = r["windows"]
    assert (w["window"], w["version"], w["energy_kwh"], w["gross_minor"], w["total_minor"]) == (KEY, 1, 4.0, 104, 104)
    [t] = r["totals"]
    assert (t["currency"], t["windows"], t["energy_kwh"], t["gross_minor"], t["paid"]) == ("USD", 1, 4.0, 104, "1.04")
    assert {f["role"]: f["amount_minor"] for f in t["flows"]} == FLOWS_104
    resp = ok(operator("GET", f"{settled['p']}/enrollments/{enr}/settlement.csv"))
    rows = csv_rows(resp.get_data(as_text=True))
    assert len(rows) == 8 and {r["device_id"] for r in rows} == {str(settled["devices"][0])}
    assert sum(int(x["amount_minor"]) for x in rows) == 104


def test_an_enrollment_without_settlements(operator, world) -> None:  # noqa: ANN001
    enr = world["enrollments"][2]
    r = ok(operator("GET", f"{world['p']}/enrollments/{enr}/settlement"))
    assert (r["windows"], r["totals"]) == ([], [])
    assert ok(operator("GET", f"{world['p']}/enrollments/{enr}/settlement.csv")).get_data(as_text=True).count("\n") == 1


# ------------------------------------------------------------------------------------ refusals

ROUTES = [("POST", "/windows/{key}/settle"), ("GET", "/windows/{key}/settlement"),
          ("GET", "/windows/{key}/settlement.csv"), ("GET", "/windows/{key}/settlement.png"),
          ("GET", "/windows/{key}/settlement/devices/1"), ("GET", "/enrollments/1/settlement"),
          ("GET", "/enrollments/1/settlement.csv")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("header", [None, "Bearer nope"])
def test_every_settlement_route_needs_a_token(app, settled, method: str, path: str, header: str | None) -> None:  # noqa: ANN001
    headers = {"Authorization": header} if header else {}
    resp = app.test_client().open(f"/admin/api/v1{settled['p']}{path.format(key=KEY)}", method=method, headers=headers)
    assert "token" in problem(resp, 401)


@pytest.mark.parametrize(("query", "status", "message"), [
    ("?version=abc", 400, "'version' must be a whole number"),
    ("?version=0", 400, "'version' must be a whole number"),
    ("?version=-1", 400, "'version' must be a whole number"),
    ("?version=²", 400, "'version' must be a whole number"),
    ("?version=99999999999999999999", 400, "'version' must be a whole number"),
    ("?version=2147483648", 400, "'version' must be a whole number"),
    ("?version=7", 404, "no settlement version 7 (versions 1)"),
    ("?start=-1", 400, "'start' must be a non-negative integer"),
    ("?limit=x", 400, "'limit' must be a non-negative integer"),
])
def test_bad_queries_are_4xx(operator, settled, query: str, status: int, message: str) -> None:  # noqa: ANN001
    paging = "start" in query or "limit" in query
    for suffix in ("",) if paging else ("", ".csv", ".png", f"/devices/{settled['devices'][0]}"):
        assert message in problem(operator("GET", f"{settled['w']}/settlement{suffix}{query}"), status)


def test_unknown_things_are_404(operator, settled) -> None:  # noqa: ANN001
    p = settled["p"]
    assert "no window '1999-01-01'" in problem(operator("GET", f"{p}/windows/1999-01-01/settlement"), 404)
    assert "no flexibility program 999" in problem(operator("GET", f"/flex/programs/999/windows/{KEY}/settlement"), 404)
    assert "device 99 is not in settlement version 1" in problem(operator("GET", f"{settled['w']}/settlement/devices/99"), 404)
    assert "no enrollment 99 in program" in problem(operator("GET", f"{p}/enrollments/99/settlement"), 404)
    assert "no enrollment 99 in program" in problem(operator("GET", f"{p}/enrollments/99/settlement.csv"), 404)


def test_odd_input_never_gets_a_5xx(operator, settled) -> None:  # noqa: ANN001
    p = settled["p"]
    odd = ["x", "0", "-1", "2147483648", "99999999999999999999", "%00", "a%00b", "%FF", "²", "x" * 40, "1.5", ""]
    probes = []
    for i in odd:
        probes += [("POST", f"{p}/windows/{i}/settle"), ("GET", f"{p}/windows/{i}/settlement"),
                   ("GET", f"{p}/windows/{i}/settlement.csv"), ("GET", f"{p}/windows/{i}/settlement.png"),
                   ("GET", f"{p}/windows/{KEY}/settlement/devices/{i}"), ("GET", f"{p}/enrollments/{i}/settlement"),
                   ("GET", f"{p}/enrollments/{i}/settlement.csv"), ("GET", f"/flex/programs/{i}/windows/{KEY}/settlement"),
                   ("GET", f"{p}/windows/{KEY}/settlement?version={i}&start={i}&limit={i}"),
                   ("GET", f"{p}/windows/{KEY}/settlement.png?version={i}")]
    for method, path in probes:
        resp = operator(method, path)
        assert resp.status_code < 500, (method, path, resp.data[:300])
        if resp.status_code >= 400:
            assert resp.content_type == "application/problem+json", (method, path)


def test_five_minute_intervals_give_plain_decimals(operator, app, database, clock) -> None:  # noqa: ANN001
    """Δ = 5 min: 1 kW credited for 1/12 h is 1/12 kWh, stored exactly as "1/12"; the CSV shows
    plain decimals (rounded to 9 places where they do not terminate), the money still adds up."""
    from tests.builders import PROGRAM

    w = make_world(database, measurement={**PROGRAM["measurement"], "interval_s": 300})
    deliver(database, w)
    base = f"/flex/programs/{w['program']}/windows/{KEY}"
    ok(operator("POST", f"{base}/settle"))
    trace = ok(operator("GET", f"{base}/settlement/devices/{w['devices'][1]}"))
    assert trace["detail"]["intervals"][0]["lines"][0]["energy_kwh"] == "1/12"
    rows = csv_rows(operator("GET", f"{base}/settlement.csv").get_data(as_text=True))
    assert len(rows) == 3 * 24
    device1 = [r for r in rows if int(r["device_id"]) == w["devices"][1]]
    assert {r["credited_kwh"] for r in device1} == {"0.083333333"}
    assert {r["credited_kwh"] for r in rows if int(r["device_id"]) == w["devices"][0]} == {"0.166666667"}
    report = ok(operator("GET", f"{base}/settlement"))
    assert sum(int(r["amount_minor"]) for r in rows) == report["summary"]["gross_minor"]
    assert [d["energy_kwh"] for d in report["devices"]["rows"]] == [4.0, 2.0, 4.0]

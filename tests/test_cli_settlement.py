"""`derflex flex settle | settlement | enrollment-settlement` as an operator meets them: a human
table by default (intervals, money per party in major units), JSON and CSV that match the stored
run, a picture, one device down to its readings, and every mistake one line on standard error.

Runs on the `database` fixture: SQLite, or PostgreSQL with DERFLEX_TEST_DATABASE_URL.
"""

from __future__ import annotations

import csv
import io
import json
import re
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from server.cli import main
from tests.builders import END, KEY, SETTLED_AT, START, deliver, make_world, mirror

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def clock(monkeypatch):  # noqa: ANN001, ANN201
    from server.cli import context

    def set_to(t: int) -> None:
        monkeypatch.setattr(context, "now", lambda: t)

    set_to(SETTLED_AT)
    return set_to


@pytest.fixture
def run(tmp_path: Path, database, clock):  # noqa: ANN001, ANN201
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True):  # noqa: ANN202
        result = runner.invoke(main, ["--home", str(tmp_path), "--database-url", database.url, *args],
                               env={"DERFLEX_DATABASE_URL": "", "DERFLEX_HOME": ""}, prog_name="derflex")
        if ok:
            assert result.exit_code == 0, (result.output, result.exception)
        return result

    return invoke


def fails(result, message: str, code: int = 1) -> None:  # noqa: ANN001
    """A refused command: exit `code`, nothing on stdout, one line on stderr, no traceback."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    if code == 1:
        assert result.stdout == ""
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert message in result.stderr, result.stderr


@pytest.fixture
def world(database):  # noqa: ANN001, ANN201
    w = make_world(database)
    deliver(database, w)
    w["pid"] = str(w["program"])
    return w


def test_the_commands_explain_themselves(run) -> None:  # noqa: ANN001
    settle = " ".join(run("flex", "settle", "--help").output.split())
    for words in ("Measure and settle one ended window now", "new version", "nothing it reads has changed",
                  "local date"):
        assert words in settle, words
    report = " ".join(run("flex", "settlement", "--help").output.split())
    for words in ("--version", "--format [table|json|csv]", "--device", "--png", "requested, cleared",
                  "meter readings", "major units", "derflex flex settlement 1 2026-11-30 --png"):
        assert words in report, words
    enr = " ".join(run("flex", "enrollment-settlement", "--help").output.split())
    assert "every settled window" in enr and "--format [table|json|csv]" in enr


def test_settle_prints_the_table_and_running_it_again_changes_nothing(run, world) -> None:  # noqa: ANN001
    out = run("flex", "settle", world["pid"], KEY).output
    lines = out.splitlines()
    assert lines[0] == f"window {KEY} settled: version 1 (operator)"
    assert "Peak Saver — window 2026-11-30, Mon 30 Nov 2026 16:00–18:00 EST" in out
    assert "settlement version 1 (current, operator), settled 2026-11-30T23:10:00Z; 3 device(s); 15-minute intervals" in out
    assert re.search(r"16:00–16:15\s+6\.000\s+6\.000\s+6\.000\s+5\.000\s+3/3\s+0\.2600", out)
    assert re.search(r"total \(kWh\)\s+12\.000\s+12\.000\s+12\.000\s+10\.000", out)
    assert "Delivered 12.0 of 12.0 kWh asked (100 %); paid USD 2.56 (gross USD 2.56, of which tax USD 0.25)" in out
    assert re.search(r"customer-0\s+SELLER\s+USD 0\.63", out)
    assert re.search(r"grid-operator\s+GRID_OPERATOR\s+USD 0\.51", out)  # 21 + 9 + 21
    assert re.search(r"\s2\s+customer-1\s+x_of_y\s+2\.000\s+50 %\s+USD 0\.48\s+USD 0\.48", out)
    again = run("flex", "settle", world["pid"], KEY).output
    assert again.startswith(f"window {KEY}: nothing changed since version 1")
    assert "versions: v1 operator 2026-11-30T23:10:00Z (current)" in again


def test_settlement_as_json_csv_and_a_picture(run, world, tmp_path: Path) -> None:  # noqa: ANN001
    run("flex", "settle", world["pid"], KEY)
    report = json.loads(run("flex", "settlement", world["pid"], KEY, "--format", "json").output)
    assert (report["version"], report["summary"]["gross_minor"], report["paid"]) == (1, 256, "2.56")
    assert [d["gross_minor"] for d in report["devices"]["rows"]] == [104, 48, 104]
    text = run("flex", "settlement", world["pid"], KEY, "--format", "csv").output
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 24 and sum(int(r["amount_minor"]) for r in rows) == report["summary"]["gross_minor"]
    picture = tmp_path / "settlement.png"
    result = run("flex", "settlement", world["pid"], KEY, "--format", "csv", "--png", str(picture))
    assert result.stdout == text  # the CSV stays clean; the note goes to stderr
    assert f"picture: {picture}" in result.stderr
    data = picture.read_bytes()
    assert data[:8] == PNG_SIGNATURE and struct.unpack(">II", data[16:24]) == (960, 600)


def test_one_device_down_to_its_readings(run, world, database, clock) -> None:  # noqa: ANN001
    run("flex", "settle", world["pid"], KEY)
    dev = str(world["devices"][1])
    out = run("flex", "settlement", world["pid"], KEY, "--device", dev).output
    assert f"device {dev} (LFDI {world['lfdis'][1]}), customer customer-1" in out
    assert "baseline: x_of_y from 2026-11-29, 2026-11-28, 2026-11-27 (3 eligible day(s))" in out
    assert re.search(r"16:00–16:15\s+3\.000\s+3\.000\s+2\.000\s+2\.000\s+1\.000\s+2\.000\s+0\.2600\s+0\.250\s+USD 0\.06", out)
    assert "event 2026-11-30 16:00–18:00: 8 reading(s), 2000–2000 W" in out
    assert "baseline day 2026-11-29 16:00–18:00: 8 reading(s), 3000–3000 W" in out
    assert "readings now: the same as settled (digest matches)" in out
    trace = json.loads(run("flex", "settlement", world["pid"], KEY, "--device", dev, "--format", "json").output)
    assert [iv["readings_kw"] for iv in trace["detail"]["intervals"]] == [iv["actual_kw"] for iv in trace["detail"]["intervals"]]
    rows = list(csv.DictReader(io.StringIO(run("flex", "settlement", world["pid"], KEY, "--device", dev,
                                               "--format", "csv").output)))
    assert {r["device_id"] for r in rows} == {dev} and sum(int(r["amount_minor"]) for r in rows) == 48

    mirror(database, world["lfdis"][1], START, [3000] * 8, now=END + 3000)  # late: device 1 did nothing
    assert "readings now: CHANGED since this settlement" in run("flex", "settlement", world["pid"], KEY, "--device", dev).output
    clock(END + 3600)
    assert run("flex", "settle", world["pid"], KEY).output.startswith(f"window {KEY} settled: version 2 (operator)")
    out = run("flex", "settlement", world["pid"], KEY).output
    assert "changed from version 1: delivered 12.0 → 10.0 kWh, paid USD 2.56 → USD 2.08" in out
    assert "v1 operator 2026-11-30T23:10:00Z (superseded 2026-12-01T00:00:00Z); v2 operator" in out
    old = run("flex", "settlement", world["pid"], KEY, "--version", "1").output
    assert "settlement version 1 (superseded, operator)" in old and "paid USD 2.56" in old


def test_enrollment_settlement(run, world) -> None:  # noqa: ANN001
    enr = str(world["enrollments"][0])
    assert "no settled window includes this device yet" in run("flex", "enrollment-settlement", world["pid"], enr).output
    run("flex", "settle", world["pid"], KEY)
    out = run("flex", "enrollment-settlement", world["pid"], enr).output
    assert out.startswith(f"enrollment {enr} (active): device {world['devices'][0]} (LFDI {world['lfdis'][0]}), "
                          "customer customer-0 — program 'Peak Saver'")
    assert re.search(r"2026-11-30\s+Mon 30 Nov 2026 16:00–18:00 EST\s+v1\s+4\.000\s+100 %\s+USD 1\.04\s+USD 1\.04", out)
    assert "total over 1 window(s): 4.000 kWh credited, gross USD 1.04, paid USD 1.04" in out
    assert re.search(r"customer-0\s+SELLER\s+USD 0\.63", out) and re.search(r"government\s+GOVERNMENT\s+USD 0\.10", out)
    body = json.loads(run("flex", "enrollment-settlement", world["pid"], enr, "--format", "json").output)
    assert body["totals"][0]["gross_minor"] == 104
    rows = list(csv.DictReader(io.StringIO(run("flex", "enrollment-settlement", world["pid"], enr, "--format", "csv").output)))
    assert len(rows) == 8 and sum(int(r["amount_minor"]) for r in rows) == 104


@pytest.mark.parametrize(("args", "message"), [
    (("settle", "{pid}", "2026-12-01"), "window 2026-12-01 was not published (state planned): nothing to settle"),
    (("settle", "{pid}", "1999-01-01"), "no window '1999-01-01'"),
    (("settle", "9", KEY), "no window"),
    (("settle", "{pid}", "a\x01b"), "window key must not contain control characters"),
    (("settlement", "{pid}", KEY), "window 2026-11-30 has not been settled"),
    (("settlement", "9", KEY), "no flexibility program 9"),
    (("settlement", "{pid}", "2026-12-02"), "window 2026-12-02 has not been settled (state planned"),
    (("enrollment-settlement", "{pid}", "99"), "no enrollment 99 in program"),
])
def test_mistakes_before_settling_are_one_line(run, world, args, message) -> None:  # noqa: ANN001
    fails(run("flex", *(a.format(pid=world["pid"]) for a in args), ok=False), message)


def test_settling_too_early_is_refused(run, world, clock) -> None:  # noqa: ANN001
    clock(END - 60)
    fails(run("flex", "settle", world["pid"], KEY, ok=False),
          "window 2026-11-30 ends at 2026-11-30T23:00:00Z: it can be settled after that")


@pytest.mark.parametrize(("args", "message", "code"), [
    (("--version", "9"), "window 2026-11-30 has no settlement version 9 (versions 1)", 1),
    (("--device", "99"), "device 99 is not in settlement version 1 of window 2026-11-30", 1),
    (("--device", "99", "--format", "csv"), "device 99 is not in settlement version 1", 1),
    (("--png", "{missing}"), "cannot write the picture to {missing}", 1),
    (("--version", "0"), "Invalid value for '--version'", 2),
    (("--format", "xml"), "Invalid value for '--format'", 2),
])
def test_mistakes_after_settling_are_one_line(run, world, tmp_path: Path, args, message, code) -> None:  # noqa: ANN001
    run("flex", "settle", world["pid"], KEY)
    missing = str(tmp_path / "no-such-folder" / "x.png")
    fails(run("flex", "settlement", world["pid"], KEY, *(a.format(missing=missing) for a in args), ok=False),
          message.format(missing=missing), code)


def test_a_device_in_five_minute_intervals(run, database) -> None:  # noqa: ANN001
    from tests.builders import PROGRAM

    w = make_world(database, measurement={**PROGRAM["measurement"], "interval_s": 300})
    deliver(database, w)
    run("flex", "settle", str(w["program"]), KEY)
    out = run("flex", "settlement", str(w["program"]), KEY, "--device", str(w["devices"][1])).output
    assert re.search(r"16:00–16:05\s+3\.000\s+3\.000\s+2\.000\s+2\.000\s+1\.000\s+2\.000\s+0\.2600\s+0\.083\s+USD 0\.02", out)
    assert "credited 2.000 kWh, performance 50 %" in out

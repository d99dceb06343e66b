"""`derflex der-program …` and `derflex event …` as an operator meets them: a DER program from creation
to a cancelled event, readable tables and --json, one-line errors, and the old name `program`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from server.cli import main

LFDIS = ["3E4F45AB31EDFE5B67E343E5E4562E31984E23E5", "AB" * 20, "CD" * 20]


@pytest.fixture
def run(tmp_path: Path):  # noqa: ANN201
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True):  # noqa: ANN202
        result = runner.invoke(main, ["--home", str(tmp_path), *args], env={"DERFLEX_DATABASE_URL": ""})
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code != 0, result.output
            assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
            lines = [line for line in result.output.splitlines() if line.strip()]
            assert lines and lines[-1].startswith("Error"), result.output
        return result

    return invoke


@pytest.fixture
def devices(run) -> list[int]:  # noqa: ANN001
    return [json.loads(run("admin", "register", lfdi).output)["id"] for lfdi in LFDIS]


def test_help_explains_der_programs_and_events(run) -> None:  # noqa: ANN001
    top = run("--help").output
    assert "der-program" in top and "event" in top
    create = run("der-program", "create", "--help").output
    assert "LOWER number wins" in create and "HUNDREDTHS OF A PERCENT" in create
    event = run("event", "create", "--help").output
    assert "derflex event create 1 --start 2026-11-22T16:00-08:00 --duration 3600 --fixed-w 5000" in event
    assert "hundredths of a percent" in event and "UTC offset" in event
    for group in ("event", "der-program", "der-program members"):
        assert "Usage" in run(*group.split(), "--help").output


def test_a_der_program_from_creation_to_a_cancelled_event(run, devices) -> None:  # noqa: ANN001
    out = run("der-program", "create", "--primacy", "2", "--description", "Peak Saver", "--max-w", "10000").output
    assert "created DER program 1" in out and "opModMaxLimW=10000 (100 %)" in out
    assert "DER program 1: 2 device(s) added" in run("der-program", "members", "add", "1", str(devices[0]), str(devices[1])).output
    assert "1 device(s) added" in run("der-program", "members", "add", "1", str(devices[1]), str(devices[2])).output
    assert "1 device(s) removed" in run("der-program", "members", "remove", "1", str(devices[2])).output
    members = run("der-program", "members", "list", "1").output
    assert "2 member(s)" in members and LFDIS[0] in members and LFDIS[2] not in members
    listing = run("der-program", "list").output
    assert "1 DER program(s)" in listing and "Peak Saver" in listing
    assert json.loads(run("der-program", "list", "--json").output)["programs"][0]["member_count"] == 2

    start = int(time.time()) + 3600
    start_iso = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(start))
    created = run("event", "create", "1", "--start", start_iso, "--duration", "1h", "--fixed-w", "5000",
                  "--description", "Evening peak").output
    assert "created 1 event(s) in DER program 1" in created
    assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)) + f" ({start})" in created  # ISO UTC and epoch
    assert "opModFixedW=5000 (50 %)" in created and "all members" in created and "2 targeted" in created

    events = json.loads(run("event", "list", "1", "--json").output)["events"]
    assert [(e["start"], e["duration"], e["control"], e["state"]) for e in events] == [
        (start, 3600, {"opModFixedW": 5000}, "scheduled")]
    mrid = events[0]["mrid"]
    table = run("event", "list", "1").output
    assert mrid in table and "scheduled" in table and "Evening peak" in table

    cancelled = run("event", "cancel", mrid, "--randomized").output
    assert f"cancelled event {mrid}" in cancelled and "with randomization" in cancelled
    shown = json.loads(run("event", "show", mrid.lower(), "--json").output)
    assert shown["state"] == "cancelled" and shown["cancel_randomized"] is True


def test_events_for_chosen_devices_and_default_control(run, devices) -> None:  # noqa: ANN001
    run("der-program", "create", "--primacy", "0")
    run("der-program", "members", "add", "1", *map(str, devices))
    out = run("event", "create", "1", "--start", "now", "--duration", "600", "--target-w", "-50000",
              "--device", str(devices[0]), "--device", str(devices[1]), "--json").output
    events = json.loads(out)["events"]
    assert [e["device_id"] for e in events] == devices[:2]
    assert events[0]["control"] == {"opModTargetW": {"multiplier": 1, "value": -5000}}
    assert events[0]["state"] == "active"
    out = run("der-program", "default-control", "1", "--control", '{"opModMaxLimW": 8000, "rampTms": 3000}').output
    assert "opModMaxLimW=8000 (80 %), rampTms=3000" in out and "version 1" in out
    assert "version 2" in run("der-program", "default-control", "1", "--disconnect").output
    shown = json.loads(run("der-program", "show", "1", "--json").output)
    assert shown["default_control"] == {"opModConnect": False} and shown["members"] == devices
    assert "opModConnect=false" in run("der-program", "show", "1").output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("der-program", "create"), "--primacy"),
        (("der-program", "create", "--primacy", "300"), "0<=x<=255"),
        (("der-program", "create", "--primacy", "1", "--description", "x" * 33), "32 characters"),
        (("der-program", "create", "--primacy", "1", "--fixed-w", "10001"), "out of range"),
        (("der-program", "show", "9"), "no DER program 9"),
        (("der-program", "members", "add", "1", "999"), "no EndDevice 999"),
        (("der-program", "default-control", "1"), "say what devices should do"),
        (("der-program", "default-control", "1", "--control", "{nope"), "not JSON"),
        (("der-program", "default-control", "1", "--control", "{}", "--max-w", "1"), "not both"),
        (("event", "create", "1", "--start", "2031-11-22T16:00", "--duration", "3600", "--fixed-w", "5000"), "no UTC offset"),
        (("event", "create", "1", "--start", "soon", "--duration", "3600", "--fixed-w", "5000"), "ISO-8601"),
        (("event", "create", "1", "--start", "now", "--duration", "forever", "--fixed-w", "5000"), "not a duration"),
        (("event", "create", "1", "--start", "now", "--duration", "3600"), "say what devices should do"),
        (("event", "create", "1", "--start", "now", "--duration", "8d", "--fixed-w", "1"), "not a duration"),
        (("event", "create", "1", "--start", "now", "--duration", "200h", "--fixed-w", "1"), "duration must be"),
        (("event", "create", "1", "--start", "now", "--duration", "60", "--target-w", "123456"), "cannot be sent exactly"),
        (("event", "create", "1", "--start", "now", "--duration", "60", "--fixed-w", "1", "--device", "999"), "not members"),
        (("event", "create", "7", "--start", "now", "--duration", "60", "--fixed-w", "1"), "no DER program 7"),
        (("event", "list", "7"), "no DER program 7"),
        (("event", "cancel", "ABC"), "no event 'ABC'"),
    ],
)
def test_bad_input_is_one_clear_line(run, args, message: str) -> None:  # noqa: ANN001
    if args[:2] != ("der-program", "create"):
        run("der-program", "create", "--primacy", "1")
    result = run(*args, ok=False)
    assert message in result.output


def test_refused_commands_store_nothing(run, devices) -> None:  # noqa: ANN001
    run("der-program", "create", "--primacy", "1")
    run("der-program", "members", "add", "1", str(devices[0]))
    run("der-program", "members", "add", "1", str(devices[1]), "999", ok=False)
    assert json.loads(run("der-program", "show", "1", "--json").output)["members"] == [devices[0]]
    run("event", "create", "1", "--start", "now", "--duration", "60", "--fixed-w", "1",
        "--device", str(devices[0]), "--device", str(devices[2]), ok=False)
    assert json.loads(run("event", "list", "1", "--all", "--json").output)["all"] == 0


def test_the_old_name_program_still_works_and_says_it_is_deprecated(tmp_path: Path, devices) -> None:  # noqa: ANN001
    runner = CliRunner()

    def invoke(*args: str):  # noqa: ANN202
        result = runner.invoke(main, ["--home", str(tmp_path), *args], env={"DERFLEX_DATABASE_URL": ""})
        assert result.exit_code == 0, result.output
        return result

    created = invoke("program", "create", "--primacy", "3", "--json")
    assert json.loads(created.stdout)["primacy"] == 3  # stdout stays machine-readable
    assert "deprecated" in created.stderr and "derflex der-program" in created.stderr
    invoke("program", "members", "add", "1", str(devices[0]))
    shown = json.loads(invoke("der-program", "show", "1", "--json").stdout)
    assert shown["members"] == [devices[0]]  # the alias wrote through the same service
    assert "deprecated" not in invoke("der-program", "list").stderr
    top = invoke("--help").stdout
    assert "der-program" in top and "  program " not in top  # hidden from the command list

"""`derflex der-program curve …` and `derflex admin log-events`: curves added, listed, linked from a
control and refused deletion while linked; a device's log events shown newest first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from server.cli import main

LFDI = "AB" * 20


@pytest.fixture
def run(tmp_path: Path):  # noqa: ANN201
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True):  # noqa: ANN202
        result = runner.invoke(main, ["--home", str(tmp_path), *args], env={"DERFLEX_DATABASE_URL": ""})
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code != 0, result.output
            assert "Traceback" not in result.output
        return result

    return invoke


def test_curves_from_the_command_line(run) -> None:  # noqa: ANN001
    run("der-program", "create", "--primacy", "1")
    assert "volt-var" in run("der-program", "curve", "add", "--help").output
    out = run("der-program", "curve", "add", "1", "--type", "volt-var", "--y-ref", "setMaxVar", "--description", "VV",
              "--point", "92:30", "--point", "98:0", "--point", "102:0", "--point", "108:-30").output
    assert "added curve 1 to DER program 1" in out and "92:30 98:0 102:0 108:-30" in out and "%setMaxVar" in out
    pf = json.loads(run("der-program", "curve", "add", "1", "--type", "watt-pf", "--y-ref", "0", "--y-multiplier", "-2",
                        "--point", "0:100:inject", "--point", "100:90:absorb", "--json").output)
    assert pf["curveType"] == 13 and pf["CurveData"][1] == {"excitation": True, "xvalue": 100, "yvalue": 90}
    bad = run("der-program", "curve", "add", "1", "--type", "volt-var", "--y-ref", "setMaxVar",
              "--point", "108:0", "--point", "92:0", ok=False).output
    assert "strictly increasing" in bad
    assert "1…10 points" not in bad
    listing = run("der-program", "curve", "list", "1").output
    assert "2 curve(s)" in listing and "watt-pf" in listing and "0:100:inject" in listing
    run("der-program", "default-control", "1", "--control", '{"opModVoltVar": 1}')
    assert json.loads(run("der-program", "show", "1", "--json").output)["default_control"] == {"opModVoltVar": 1}
    refused = run("der-program", "curve", "delete", "1", "1", ok=False).output
    assert "used by DER program 1's default control" in refused
    assert "curve 2 deleted" in run("der-program", "curve", "delete", "1", "2").output
    assert "1 curve(s)" in run("der-program", "curve", "list", "1").output


def test_log_events_from_the_command_line(run, tmp_path: Path) -> None:  # noqa: ANN001
    device = json.loads(run("admin", "register", LFDI).output)["id"]
    from server.cli.context import Context, run as in_transaction
    from server.scope import Scope
    from server.sep2.log import LogEvent
    from server.services.sep2 import lel

    ctx = Context(tmp_path, None)
    for created in (1_800_000_000, 1_800_000_100):
        posted = LogEvent(created_date_time=created, details="trip", function_set=11, log_event_code=2,
                          log_event_id=created % 1000, log_event_pen=40732, profile_id=2)
        in_transaction(ctx, lambda s, p=posted: lel.post_log_event(s, Scope.operator(), device, p, 0))
    out = run("admin", "log-events", str(device)).output
    assert f"device {device}: 2 log event(s)" in out
    assert out.index("2027-01-15T08:01:40Z") < out.index("2027-01-15T08:00:00Z") and '"trip"' in out
    assert json.loads(run("admin", "log-events", str(device), "--json", "--limit", "1").output)["all"] == 2
    assert "no EndDevice 99" in run("admin", "log-events", "99", ok=False).output

"""The operator's CSIP-AUS commands: `derflex admin device remove|connection-point`, `admin
connection-points`, `admin client revoke|restore|list`, and DOE limits and sites in `event create`
and `der-program default-control`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from server.cli import main

LFDIS = ["AB" * 20, "CD" * 20]
NMI = "41020000002"


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
        return result

    return invoke


@pytest.fixture
def devices(run) -> list[int]:  # noqa: ANN001
    return [json.loads(run("admin", "register", lfdi).output)["id"] for lfdi in LFDIS]


def test_connection_points_and_a_sites_doe(run, devices) -> None:  # noqa: ANN001
    a, b = devices
    assert f"connection point {NMI}" in run("admin", "device", "connection-point", str(a), NMI).output
    assert "checksum" in run("admin", "device", "connection-point", str(b), "41020000003", ok=False).output
    listed = json.loads(run("admin", "connection-points", "--json").output)
    assert listed == {"all": 1, "connection_points": [{"connection_point_id": NMI, "device_ids": [a]}]}
    assert f"{NMI}" in run("admin", "connection-points").output

    program = json.loads(run("der-program", "create", "--primacy", "1", "--json").output)["id"]
    run("der-program", "members", "add", str(program), str(a), str(b))
    made = json.loads(run("event", "create", str(program), "--start", "now", "--duration", "1h",
                          "--export-limit", "1500", "--import-limit", "100000", "--connection-point", NMI,
                          "--json").output)["events"]
    assert [e["device_id"] for e in made] == [a]
    assert made[0]["control"] == {"opModImpLimW": {"multiplier": 1, "value": 10000},
                                  "opModExpLimW": {"multiplier": 0, "value": 1500}}
    shown = run("event", "show", made[0]["mrid"]).output
    assert "opModExpLimW=1500 W" in shown and "opModImpLimW=100000 W" in shown
    assert "--export-limit" in run("event", "create", str(program), "--start", "now", "--duration", "1h",
                                   "--export-limit", "100001", ok=False).output  # not exact as 16 bits × 10^n
    run("der-program", "default-control", str(program), "--generation-limit", "0", "--load-limit", "3000",
        "--set-grad-w", "100")
    view = json.loads(run("der-program", "show", str(program), "--json").output)
    assert view["default_control"] == {"opModGenLimW": {"multiplier": 0, "value": 0},
                                       "opModLoadLimW": {"multiplier": 0, "value": 3000}}
    assert view["default_settings"] == {"setGradW": 100}
    assert "(none)" in run("admin", "device", "connection-point", str(a), "--clear").output


def test_remove_a_device(run, devices) -> None:  # noqa: ANN001
    a, b = devices
    assert f"removed device {a}" in run("admin", "device", "remove", str(a), "--yes").output
    listed = json.loads(run("admin", "devices", "--json").output)
    assert [d["id"] for d in listed["devices"]] == [b]
    assert "no device" in run("admin", "device", "remove", str(a), "--yes", ok=False).output
    assert json.loads(run("admin", "register", LFDIS[0]).output)["id"] != a  # registers afresh


def test_revoke_and_restore_a_client(run) -> None:  # noqa: ANN001
    assert "revoked" in run("admin", "client", "revoke", LFDIS[0].lower(), "--reason", "lost").output
    listed = json.loads(run("admin", "client", "list", "--json").output)["revoked_clients"]
    assert [(r["lfdi"], r["reason"]) for r in listed] == [(LFDIS[0], "lost")]
    assert "not revoked" in run("admin", "client", "restore", LFDIS[1], ok=False).output
    run("admin", "client", "restore", LFDIS[0])
    assert "0 revoked" in run("admin", "client", "list").output
    run("admin", "client", "revoke", "nope", ok=False)

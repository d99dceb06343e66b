"""`derflex fsa …` and the DefaultDERControl options of `derflex der-program default-control`, as an
operator meets them: readable output, --json, one-line errors that store nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from server.cli import main

LFDIS = ["3E4F45AB31EDFE5B67E343E5E4562E31984E23E5", "AB" * 20]


@pytest.fixture
def run(tmp_path: Path):  # noqa: ANN201
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True):  # noqa: ANN202
        result = runner.invoke(main, ["--home", str(tmp_path), *args], env={"DERFLEX_DATABASE_URL": ""})
        assert (result.exit_code == 0) is ok, result.output
        if not ok:
            assert "Traceback" not in result.output and result.output.strip().splitlines()[-1].startswith("Error")
        return result

    return invoke


def test_fsa_commands_from_creation_to_deletion(run) -> None:  # noqa: ANN001
    devices = [json.loads(run("admin", "register", lfdi).output)["id"] for lfdi in LFDIS]
    program = json.loads(run("der-program", "create", "--primacy", "1", "--json").output)["id"]
    made = json.loads(run("fsa", "create", "--device", str(devices[0]), "--device", str(devices[1]),
                          "--der-program", str(program), "--description", "Feeder 12", "--json").output)
    assert made["der_program_ids"] == [program] and made["device_count"] == 2
    shown = run("fsa", "show", str(made["id"])).output
    assert "Feeder 12" in shown and f"/edev/{devices[0]}/fsa/2" in shown
    assert "1 FunctionSetAssignments" in run("fsa", "list", "--device", str(devices[1])).output
    assert "1 devices removed" in run("fsa", "devices", "remove", str(made["id"]), str(devices[1])).output
    assert "1 der programs removed" in run("fsa", "der-programs", "remove", str(made["id"]), str(program)).output
    assert json.loads(run("fsa", "show", str(made["id"]), "--json").output)["version"] == 1
    assert "no EndDevice 999" in run("fsa", "devices", "add", str(made["id"]), "999", ok=False).output
    run("fsa", "delete", str(made["id"]))
    assert "0 FunctionSetAssignments" in run("fsa", "list").output
    assert "no FunctionSetAssignments" in run("fsa", "show", str(made["id"]), ok=False).output


def test_default_control_takes_every_default_field(run) -> None:  # noqa: ANN001
    program = json.loads(run("der-program", "create", "--primacy", "1", "--json").output)["id"]
    out = run("der-program", "default-control", str(program), "--max-w", "8000", "--set-grad-w", "500",
              "--set-es-delay", "30000", "--default-description", "Fallback").output
    assert "setGradW=500" in out and "setESDelay=30000" in out and "description=Fallback" in out
    view = json.loads(run("der-program", "show", str(program), "--json").output)
    assert view["default_settings"] == {"description": "Fallback", "setESDelay": 30000, "setGradW": 500}
    # every field by its 2030.5 name through --control, DERControlBase objects included
    run("der-program", "default-control", str(program), "--control",
        '{"opModFixedVar": {"refType": 1, "value": 2000}, "setSoftGradW": 20}')
    view = json.loads(run("der-program", "show", str(program), "--json").output)
    assert view["default_control"] == {"opModFixedVar": {"refType": 1, "value": 2000}}
    assert view["default_settings"] == {"setSoftGradW": 20} and view["default_control_version"] == 2
    assert "setGradW" in run("der-program", "default-control", str(program), "--set-grad-w", "70000", ok=False).output
    # settings alone: an empty DERControlBase
    run("der-program", "default-control", str(program), "--set-grad-w", "7")
    view = json.loads(run("der-program", "show", str(program), "--json").output)
    assert view["default_settings"] == {"setGradW": 7} and view["default_control_version"] == 3

"""The conformance driver's pieces that need no harness: its help, the Makefile recipe, reading
cactus-client's console panel, the docs section, client assignment and control encoding."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from server.conformance import driver, report
from server.conformance.admin_api import AdminRefused
from server.conformance.operator import active_power, control_json
from server.conformance.plugin import explain

ROOT = Path(__file__).resolve().parents[2]

# A cut-down console panel as cactus-client 1.3.3 prints it (nested boxes, a wrapped cell).
PANEL = """\
╭──────────────────────────────── failed ────────────────────────────────╮
│ ┌──────────────┬─────────────────────────────┐                         │
│ │ Steps        │ 1/3 passed                  │                         │
│ └──────────────┴─────────────────────────────┘                         │
│ Steps                                                                  │
│ ┌──────────────────────┬───────────────────────────────────────────┐   │
│ │ PRECONDITION         │ Success                                   │   │
│ │ +154ms               │ Passed                                    │   │
│ ├──────────────────────┼───────────────────────────────────────────┤   │
│ │ 1 - EDEV LIST SUB    │ Failed                                    │   │
│ │ +163ms               │ Check Failure: first try                  │   │
│ │ +5.2s                │ Exception: Received status 400 requesting │   │
│ │                      │ POST /edev/1/sub.                         │   │
│ ├──────────────────────┼───────────────────────────────────────────┤   │
│ │ 2- AWAIT             │ Not Executed                              │   │
│ └──────────────────────┴───────────────────────────────────────────┘   │
│ Requests                                                               │
│ ┌─────┬────────┬──────┬───────────┬─────┐                              │
│ │ 000 │ +10ms  │ GET  │ /dcap     │ 200 │                              │
╰────────────────────────────────────────────────────────────────────────╯
"""
STEPS = ["PRECONDITION", "1 - EDEV LIST SUB", "2- AWAIT"]


def test_help_explains_the_driver() -> None:
    out = subprocess.run([sys.executable, "-m", "server.conformance.driver", "--help"], capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    for words in ("make conformance", "--procedures", "S-ALL-50", "cactus_client.admin", "Python 3.12"):
        assert words in out.stdout


def test_the_makefile_recipe_runs_the_driver_with_the_named_procedures() -> None:
    out = subprocess.run(["make", "-n", "conformance", "PROCEDURES=S-ALL-01,S-ALL-02", "STAMP=Makefile"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "-m server.conformance.driver --procedures S-ALL-01,S-ALL-02" in out.stdout


def test_the_failed_step_and_its_last_reason_are_read_from_the_panel() -> None:
    step, reason = report.steps_from_console(PANEL, STEPS)
    assert step == "1 - EDEV LIST SUB"
    assert reason == "Exception: Received status 400 requesting POST /edev/1/sub."
    passed_panel = PANEL.replace("│ Failed      ", "│ Success     ").replace("Not Executed", "Success     ")
    assert report.steps_from_console(passed_panel, STEPS) == (None, None)


def test_a_run_folder_gives_a_verdict_and_the_servers_words(tmp_path: Path) -> None:
    run = tmp_path / "run 001 - S-ALL-25"
    (run / "requests").mkdir(parents=True)
    (run / ".result").write_text("FAIL")
    (run / "requests" / "010-client-POST-edev_1_sub.request").write_text("# Epoch: 1\nPOST /edev/1/sub HTTP/1.1\n")
    (run / "requests" / "010-client-POST-edev_1_sub.response").write_text(
        "# Epoch: 2\nHTTP/1.1 400 BAD_REQUEST\nX-Error-Detail: notificationURI must not name a loopback address\n"
    )
    result = report.read_run("S-ALL-25", "Subscribe", run, PANEL, STEPS, 4.2)
    assert result.status == "FAIL" and result.failed_step == "1 - EDEV LIST SUB"
    assert result.reason.endswith("(derflex: notificationURI must not name a loopback address)")
    other = PANEL.replace("Exception: Received status 400 requesting", "Check Failure: not yet             ")
    other = other.replace("POST /edev/1/sub.", "                 ")
    assert "derflex:" not in report.read_run("S-ALL-25", "Subscribe", run, other, STEPS, 4.2).reason
    assert result.exchange[0] == "--- 010-client-POST-edev_1_sub.request"
    (run / ".result").write_text("PASS")
    assert report.read_run("S-ALL-25", "Subscribe", run, PANEL, STEPS, 1).status == "PASS"
    assert report.read_run("S-ALL-50", "Long", None, PANEL + "timed out after 60 seconds", STEPS, 60,
                           timed_out=True, capped=True).status == "CAPPED"


def test_the_docs_section_is_replaced_not_duplicated() -> None:
    results = [report.Result("S-ALL-01", "Discovery", "PASS", 3), report.Result("S-ALL-02", "x", "FAIL", 4,
                                                                                  "STEP", "why | not")]
    section = report.interop_section(results, {"cactus-client": "1.3.3", "cactus-test-definitions": "1.15.0"},
                                     commit="abc123")
    assert "1 of 2 pass" in section and "cactus-client](https://pypi.org/project/cactus-client/) 1.3.3" in section
    assert "| S-ALL-02 | FAIL | 4 | STEP | why \\| not |" in section
    doc = "# Interop\n\n## A run\n\ntext\n"
    once = report.replace_section(doc, section)
    twice = report.replace_section(once.replace("1 of 2", "2 of 2"), section)
    assert once.count(report.SECTION_START) == 1 and twice == once
    middle = report.replace_section(once + "\n## Later\n\nkept\n", section.replace("abc123", "def456"))
    assert "def456" in middle and "abc123" not in middle and middle.endswith("## Later\n\nkept\n")


def test_a_merged_table_takes_each_procedures_newest_row_and_names_its_commit() -> None:
    earlier = {"commit": "6746c2d + uncommitted changes", "results": [
        {"procedure": "S-ALL-02", "description": "b", "status": "PASS", "seconds": 1},
        {"procedure": "S-ALL-10", "description": "t", "status": "PASS", "seconds": 2},
        {"procedure": "S-ALL-05", "description": "a", "status": "FAIL", "seconds": 2, "failed_step": "5",
         "reason": "cannot revoke"}]}
    first = {"commit": "b7b6004", "results": [
        {"procedure": "S-ALL-05", "description": "a", "status": "PASS", "seconds": 3, "commit": "ignored"}]}
    second = {"commit": "c0ffee1", "results": [
        {"procedure": "S-ALL-10", "description": "t", "status": "FAIL", "seconds": 4, "failed_step": "X",
         "reason": "why"}]}
    rows = report.merge_runs([earlier, first, second])
    assert [(r.procedure, r.status, r.commit) for r in rows] == [
        ("S-ALL-02", "PASS", "6746c2d + uncommitted changes (not re-run)"),
        ("S-ALL-05", "PASS", "b7b6004"),
        ("S-ALL-10", "FAIL", "c0ffee1"),  # numeric order, the newest run's row
    ]
    section = report.interop_section(rows, {}, commit="")
    assert "merged from several runs" in section and "**2 of 3 pass**" in section
    assert "| S-ALL-10 | FAIL | c0ffee1 | 4 | X | why |" in section
    assert "| S-ALL-02 | PASS | 6746c2d + uncommitted changes (not re-run) | 1 |  |  |" in section


def test_clients_are_assigned_by_type() -> None:
    clients = [{"id": "device-a", "type": "device"}, {"id": "device-b", "type": "device"},
               {"id": "aggregator", "type": "aggregator"}]
    assert driver.assign_clients([{"id": "c", "type": "any"}], clients) == ["device-a"]
    assert driver.assign_clients([{"id": "c", "type": "aggregator"}], clients) == ["aggregator"]
    assert driver.assign_clients([{"id": "a", "type": "device"}, {"id": "b", "type": "device"}],
                                 clients) == ["device-a", "device-b"]
    assert driver.assign_clients([{"id": "a", "type": "aggregator"}, {"id": "b", "type": "aggregator"}],
                                 clients) is None


def test_the_driver_installs_what_pyproject_declares() -> None:
    pins = driver.conformance_pins()
    assert any(p.startswith("cactus-client==") for p in pins)
    assert any(p.startswith("cactus-test-definitions==") for p in pins)
    text = (ROOT / "pyproject.toml").read_text()
    assert 'derflex = "server.conformance.plugin:DerflexAdminPlugin"' in text


@pytest.mark.parametrize(
    ("watts", "expected"),
    [(0, (0, 0)), (2500.0, (2500, 0)), (100000, (10000, 1)), (1234.5, (12345, -1)), (-4567, (-4567, 0)),
     (3_000_000, (30000, 2))],
)
def test_watts_become_an_exact_active_power(watts: float, expected: tuple[int, int]) -> None:
    ap = active_power(watts)
    assert (ap["value"], ap["multiplier"]) == expected
    assert ap["value"] * 10 ** ap["multiplier"] == pytest.approx(watts)


def test_the_control_object_uses_the_2030_5_names() -> None:
    params = {"status": "active", "opModExpLimW": 2500.0, "opModGenLimW": 0, "opModConnect": False,
              "opModEnergize": True, "rampTms": 3000, "opModFixedW": 50.0, "duration_seconds": 60}
    assert control_json(params) == {
        "opModExpLimW": {"value": 2500, "multiplier": 0}, "opModGenLimW": {"value": 0, "multiplier": 0},
        "opModConnect": False, "opModEnergize": True, "opModFixedW": 50, "rampTms": 3000,
    }


def test_a_refusal_carries_derflexs_answer() -> None:
    from server.conformance.operator import Unsupported

    refused = AdminRefused("POST", "/der-programs/1/events", 400, "unsupported control modes: opModWatt")
    assert explain(refused) == "derflex admin API POST /der-programs/1/events answered 400: unsupported control modes: opModWatt"
    assert explain(Unsupported("no poll rate for X")) == "derflex cannot do this: no poll rate for X"

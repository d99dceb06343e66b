"""The whole chain once, for real: `python -m server.conformance.driver` builds (or reuses)
.venv-conformance, starts a fresh derflex and the webhook service, and runs one procedure of the
harness that derflex passes today (S-ALL-08: DERStatus connection states). Slow (a minute, more
when the environment is built first), so `make test-slow` runs it, not `make test`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from server.conformance import driver

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_one_procedure_runs_end_to_end(tmp_path: Path) -> None:
    try:
        driver.find_python312(None)
    except driver.SetupError:
        pytest.skip("no Python 3.12 on this machine")
    out = subprocess.run(
        [sys.executable, "-m", "server.conformance.driver", "--procedures", "S-ALL-08", "--timeout", "120",
         "--results", str(tmp_path), "--no-docs"],
        capture_output=True, text=True, cwd=ROOT, timeout=900,
    )
    assert "[ 1/1] S-ALL-08" in out.stdout, out.stdout + out.stderr
    (run,) = tmp_path.iterdir()
    saved = json.loads((run / "results.json").read_text())
    assert saved["versions"]["cactus-client"] == "1.3.3"
    (result,) = saved["results"]
    assert result["status"] == "PASS", (run / "runs" / "S-ALL-08" / "report.md").read_text()
    assert out.returncode == 0
    assert any("registered EndDevice" in line for line in result["admin"])
    assert (run / "runs" / "S-ALL-08" / "report.md").read_text().startswith("# S-ALL-08")

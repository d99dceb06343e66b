"""`python -m der_sim fleet` against a real `derflex serve`: devices get certificates from the
server's dev PKI, register over TLS, poll and report for a while, and the summary says so; bad
arguments get one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e


def _sim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "der_sim", *args], capture_output=True, text=True, timeout=180, cwd=cwd)


def test_a_small_fleet_runs_and_summarises(server: RunningServer, tmp_path: Path) -> None:
    done = _sim("fleet", "--server", f"127.0.0.1:{server.port}", "--pki", str(server.home / "certs"),
                "--devices", "3", "--mix", "battery=1,load=1,pv=1", "--poll-rate", "2", "--post-rate", "3",
                "--minutes", "0.25", "--prefix", "cli-sim", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr + server.log.read_text()[-3000:]
    summary = json.loads(done.stdout)
    assert summary["devices"] == 3 and summary["phases"] == {"running": 3}
    assert summary["failed_requests"] == 0 and summary["requests"] > 20
    assert summary["counters"]["polls"] >= 6 and summary["counters"]["readings_posted"] >= 0
    assert "devices registered" in done.stderr  # the progress while starting


def test_bad_arguments_are_one_clear_line(tmp_path: Path) -> None:
    done = _sim("fleet", "--pki", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert done.returncode != 0 and "no dev PKI" in done.stderr and "Traceback" not in done.stderr
    done = _sim("fleet", "--server", "nonsense", cwd=tmp_path)
    assert done.returncode == 2 and "host:port" in done.stderr and "Traceback" not in done.stderr
    assert "Run N simulated devices" in _sim("fleet", "--help", cwd=tmp_path).stdout

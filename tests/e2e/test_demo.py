"""`derflex demo` end to end, small: four simulated homes (batteries, controllable loads, EV
chargers) talk 2030.5 over mutual TLS to a real `derflex serve`, are enrolled through the Beckn
facade by the project's BAP, obey a one-minute window the scheduler cleared and published, and are
measured and paid from their mirrored readings.

Stated tolerances: the delivered reduction measured from the mirrored readings (against the
devices' own 10-day X-of-Y baselines) is within 15 % of the cleared energy — the simulated loads'
demand carries 3 % noise and a device may follow its control a poll (10 s) late; the payout is
the credited energy at the device's price within 1 minor unit per device and interval (rounding
is per line). And the printed summary and the picture are there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from server.db import flex as store
from server.db import settlement as records
from server.db.session import Database

pytestmark = pytest.mark.e2e


def test_the_demo_runs_end_to_end_and_devices_deliver_what_was_cleared(tmp_path: Path) -> None:
    home, plot = tmp_path / "home", tmp_path / "delivery.png"
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "demo", "--devices", "4", "--window-minutes", "1",
         "--home", str(home), "--plot", str(plot), "--seed", "7"],
        capture_output=True, text=True, timeout=420, cwd=tmp_path,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out + (home / "server.log").read_text()[-5000:]
    for want in ("[8/8] done", "Summary", "responses:", "payouts:", "0 failed", "settlement of order"):
        assert want in out, out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    db = Database(f"sqlite:///{home / 'var' / 'derflex.db'}")
    try:
        with db.transaction() as s:
            (w,) = [w for w in s.query(store.FlexWindow).filter(store.FlexWindow.state == "published")]
            run = records.current_run(s, w.id)
            summary = json.loads(run.summary)
            rows = records.device_rows(s, run.id)
            details = [json.loads(r.detail) for r in rows]
    finally:
        db.dispose()
    assert summary["devices"] == 4 and summary["methods"] == {"x_of_y": 4}
    cleared, delivered = summary["cleared_kwh"], summary["delivered_kwh"]
    assert cleared > 0
    assert abs(delivered - cleared) <= 0.15 * cleared, (cleared, delivered, details)
    # the payout: Σ credited kWh × price, rounded once per line (at most half a minor unit each)
    expected = sum(min(max(iv["reduction_kw"], 0.0), iv["setpoint_kw"]) * run.interval_s / 3600 * iv["price"] * 100
                   for d in details for iv in d["intervals"] if iv["reduction_kw"] is not None)
    lines = sum(len(d["intervals"]) for d in details)
    assert abs(summary["gross_minor"] - expected) <= lines, (summary["gross_minor"], expected)
    assert sum(f["amount_minor"] for f in summary["flows"]) == summary["total_minor"] == summary["gross_minor"]

"""`derflex demo --beckn 2.0` end to end, small: four simulated homes talk 2030.5 over mutual TLS to
a real `derflex serve`; our v2 BAP (der_sim.bap_v2) discovers the program at `/beckn/v2` and
confirms one contract per home with a block bid (select → init → confirm, counter-signed Acks);
the scheduler clears the contracts' meters and publishes a one-minute window; the devices obey;
settlement pays them and every contract hears its settled on_status with DEGContract revenue flows
(the demo itself fails when the customers' flows pushed differ from the stored settlement).

About two and a half minutes (the real clock: a whole minute's alignment, the 20 s lead, the
window, the settlement delay): slow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from server.db import flex as store
from server.db import settlement as records
from server.db.beckn import BecknOrder
from server.db.session import Database
from server.services.bpp.orders import is_v2

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_demo_runs_over_beckn_v2_from_discover_to_settled_revenue_flows(tmp_path: Path) -> None:
    home, plot = tmp_path / "home", tmp_path / "delivery.png"
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "demo", "--beckn", "2.0", "--devices", "4", "--window-minutes", "1",
         "--lead-seconds", "20", "--home", str(home), "--plot", str(plot), "--seed", "7"],
        capture_output=True, text=True, timeout=420, cwd=tmp_path)
    out = done.stdout + done.stderr
    log = home / "server.log"
    assert done.returncode == 0, out + (log.read_text()[-5000:] if log.exists() else "")
    for want in ("over Beckn v2.0.0 (discover, select/init/confirm with bid curves)", "discover: resource program-1",
                 "4 contracts ACTIVE", "the BAP received the settled on_status of 4 contract(s)",
                 "over Beckn v2.0.0 LTS: 4 contracts", "settled on_status pushed to 4 of 4 contracts", "[8/8] done"):
        assert want in out, out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    db = Database(f"sqlite:///{home / 'var' / 'derflex.db'}")
    try:
        with db.transaction() as s:
            contracts = list(s.scalars(select(BecknOrder)))
            assert len(contracts) == 4 and all(is_v2(c) and c.state == "active" for c in contracts)
            (w,) = [w for w in s.query(store.FlexWindow).filter(store.FlexWindow.state == "published")]
            summary = json.loads(records.current_run(s, w.id).summary)
            enrolled = {e.external_ref for e in store.enrollments(s, w.program_id)}
    finally:
        db.dispose()
    assert enrolled == {c.id for c in contracts}  # every device came in through its v2 contract
    assert summary["devices"] == 4 and summary["cleared_kwh"] > 0
    assert abs(summary["delivered_kwh"] - summary["cleared_kwh"]) <= 0.15 * summary["cleared_kwh"], summary

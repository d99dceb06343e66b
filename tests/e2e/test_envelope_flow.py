"""An envelope program against a real `derflex serve` (its own scheduler) and simulated PV inverters
over TLS 1.2 CCM8: the scheduler publishes the window's export envelope (csipaus:opModExpLimW
1.5 kW per site), the devices apply it, and their mirrored export stays under it while before the
window they exported what the sun gave (about 5 kW).

Time is compressed: the inverters' local noon is now (tz_offset_s), they poll every 2 s, report
every 4 s and meter 2 s intervals; the window opens about 20 s after the devices are running and
the test watches its first 30 s (the whole run takes about a minute)."""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text

from der_sim.agent import AgentConfig, DeviceAgent
from der_sim.devices import PV, PVParams
from server.db import derp as der_store
from server.db import flex as store
from server.db.session import Database

from .conftest import start_server, stop_server
from .test_sim_agent import Driver, _series, _wait

pytestmark = pytest.mark.e2e

CONFIG = AgentConfig(poll_rate=2, post_rate=4, interval_s=2)
LIMIT_W = 1500.0
WATCH_S = 30  # how much of the window the test watches


def _noon_offset(now: float) -> int:
    """tz_offset_s that makes `now` local noon for a simulated PV inverter."""
    return int(12 * 3600 - now % 86_400)


def test_a_published_export_envelope_holds_the_sites_mirrored_export(tmp_path) -> None:  # noqa: ANN001
    began = time.monotonic()
    home = tmp_path / "serve"
    home.mkdir()
    server = start_server(home, env={"DERFLEX_SCHEDULER": "true", "DERFLEX_SCHEDULER_RECONCILE_SECONDS": "2"})
    pki = server.pki
    offset = _noon_offset(time.time())
    agents = [DeviceAgent.over_tls(pki.issue(f"pv-{i}"), "localhost", server.port, pki.trust_path, model=PV,
                                   params=PVParams(nameplate_w=5000.0, tz_offset_s=offset), rng=random.Random(i),
                                   config=CONFIG) for i in range(2)]
    db = Database(f"sqlite:///{home / 'var' / 'derflex.db'}")
    driver = Driver(agents)
    driver.start()
    try:
        assert _wait(lambda: all(a.phase == "running" for a in agents), 30), \
            [(a.name, a.phase, a.problem, a.last_error) for a in agents]
        from server.services.flex import enrollments, programs as flex

        now = datetime.now(timezone.utc)
        start = (now + timedelta(seconds=22)).replace(microsecond=0)
        end = start + timedelta(seconds=60)
        program = {
            "name": "Solar soak", "currency": "AUD",
            "window": {"weekdays": list(range(7)), "start": start.strftime("%H:%M:%S"),
                       "end": end.strftime("%H:%M:%S"), "tz": "UTC"},
            "price_cap": 0.5, "incentive": {"kind": "fixed", "rate_per_kwh": 0.08}, "eligible_kinds": ["pv"],
            "lead_time_s": 12, "envelope": {"export_limit_kw": LIMIT_W / 1000},
            "measurement": {"interval_s": 60, "delay_s": 10},
        }
        with db.transaction() as s:
            made = flex.create_program(s, program, int(time.time()))
            ids = dict(s.execute(text("SELECT lfdi, id FROM devices")).all())
            device_ids = [ids[a.lfdi] for a in agents]
            for d in device_ids:
                enrollments.enroll(s, made["id"], {"device_id": d, "customer": f"site-{d}", "kind": "pv"},
                                   int(time.time()))
        t0, t1 = int(start.timestamp()), int(end.timestamp())
        key = start.date().isoformat()

        def published() -> bool:
            with db.transaction() as s:
                w = store.window(s, made["id"], key)
                return w is not None and w.state == "published"

        assert _wait(published, t0 - time.time() + 5), server.log.read_text()[-3000:]
        with db.transaction() as s:
            ev = der_store.DerEvent
            rows = s.execute(select(ev.device_id, ev.controls, ev.base, ev.start, ev.duration)
                             .where(ev.program_id == made["der_program_id"])).all()
        assert sorted(r.device_id for r in rows) == sorted(device_ids)
        assert {(r.controls, r.start, r.duration) for r in rows} == {("opModExpLimW", t0, t1 - t0)}
        # the devices hear of it before the start, and follow it once it starts
        assert _wait(lambda: all(a.control is not None and a.control.exp_lim_w == LIMIT_W for a in agents),
                     t0 - time.time() + 10), [a.control for a in agents]
        watch_end = t0 + WATCH_S

        def mirrored() -> bool:
            return all(max(_series(db, d, t0 - 20, watch_end + 4), default=0) >= watch_end for d in device_ids)

        assert _wait(mirrored, watch_end - time.time() + 15)
        for d in device_ids:
            series = _series(db, d, t0 - 20, watch_end)
            before = [w for t, w in series.items() if t + 2 <= t0]
            inside = {t: w for t, w in series.items() if t0 <= t < watch_end}
            assert before and all(-w > 4000 for w in before), before  # the sun's ~5 kW exported before
            assert len(inside) >= WATCH_S // 2 - 1, inside
            assert all(-w <= LIMIT_W + 0.5 for w in inside.values()), inside  # export held under 1.5 kW
            assert max(-w for w in inside.values()) == pytest.approx(LIMIT_W, abs=1.0)  # and used up to it
        assert time.monotonic() - began < 90
    finally:
        driver.stop()
        for a in agents:
            a.close()
        db.dispose()
        assert stop_server(server) == 0, server.log.read_text()

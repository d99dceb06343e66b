"""What the tests build their worlds from, in one place.

Devices: `lfdi(name)` (a stable LFDI for a test device's name), a 5 kW battery's DER ratings
(`CAPABILITY`, `SETTINGS`), `rated_battery` (registered out of band with its ratings reported)
and `registered_cast` (the cast's owner and other registered by the operator, managed in band by
the aggregator).

The settled world the settlement tests share (service, API, CLI, Beckn, scheduler): "Peak
Saver" (USD) with 3 batteries, each offering 0→5 kW from 0.10 to 0.50 USD/kWh, so the 6 kW
request clears at 0.26 with 2 kW each; 5 earlier days of 3 kW readings (15:00–18:00 New York)
give a 3 kW baseline; during the window (Monday 2026-11-30 16:00–18:00 EST) the batteries draw
1, 2 and 0 kW: reductions 2 (as asked), 1 (half) and 3 (more than asked, credited 2).

Hand-computed (15-minute M&V intervals, 8 of them): per interval requested 6, cleared 6,
delivered 6, credited 5 kW; 12 kWh asked and delivered, 10 credited; per device 104, 48 and 104
cents (0.25 kWh × 0.26 = 6.5 c rounds half-even to 6), 256 in all; each 104 split tax 1/9
inclusive / grid 20 % / aggregator 10 %: 63 / 21 / 10 / 10.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

from server.scope import Scope
from server.sep2.der import ActivePower, DERCapability, DERSettings
from server.sep2.derp import DateTimeInterval
from server.sep2.mup import MirrorMeterReading, MirrorReadingSet, MirrorUsagePoint, Reading, ReadingType

START = int(datetime(2026, 11, 30, 21, 0, tzinfo=timezone.utc).timestamp())  # 16:00 EST
END = START + 7200
PUBLISH_AT = START - 3600
KEY = "2026-11-30"
DAY = 86_400
SETTLED_AT = END + 600
SPLIT = {"tax_rate": "1/9", "tax_mode": "inclusive", "grid_fee_rate": "0.2", "aggregator_fee_rate": "0.1"}
PROGRAM = {
    "name": "Peak Saver", "currency": "USD",
    "window": {"weekdays": ["mon", "tue", "wed", "thu", "fri"], "start": "16:00", "end": "18:00",
               "tz": "America/New_York"},
    "requested_kw": 6.0, "interval_s": 3600, "price_cap": 0.5,
    "incentive": {"kind": "pay_as_clear"}, "eligible_kinds": ["battery"], "lead_time_s": 3600,
    "measurement": {"interval_s": 900, "delay_s": 600, "resettle_days": 2, "split": SPLIT,
                    "baseline": {"x": 3, "y": 3, "min_days": 3, "lookback_days": 10, "day_types": "any"}},
}
OFFER = {"power": [[0.10, 0.0], [0.50, 5.0]]}
CAPABILITY = DERCapability(modes_supported="00000080", rtg_max_w=ActivePower(multiplier=0, value=5000),
                           rtg_max_charge_rate_w=ActivePower(multiplier=0, value=5000),
                           rtg_max_discharge_rate_w=ActivePower(multiplier=0, value=5000), type=80)
SETTINGS = DERSettings(modes_enabled="00000080", set_grad_w=100, set_max_w=ActivePower(multiplier=0, value=5000),
                       set_max_charge_rate_w=ActivePower(multiplier=0, value=5000),
                       set_max_discharge_rate_w=ActivePower(multiplier=0, value=5000), updated_time=0)
RT_W = ReadingType(accumulation_behaviour=12, commodity=1, data_qualifier=2, flow_direction=1, interval_length=900,
                   kind=37, power_of_ten_multiplier=0, uom=38)
EVENT_W = (1000, 2000, 0)
GROSS = (104, 48, 104)
FLOWS_104 = {"SELLER": 63, "GRID_OPERATOR": 21, "AGGREGATOR": 10, "GOVERNMENT": 10}


def lfdi(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:40].upper()


def rated_battery(s: Any, device_lfdi: str, now: int) -> int:
    """A device registered out of band that reported a 5 kW battery's ratings; its id."""
    from server.services.sep2 import der, edev
    from server.services.sep2.der import DER_ID

    device = edev.register_out_of_band(s, device_lfdi, now).id
    der.put(s, Scope.operator(), device, DER_ID, CAPABILITY, now)
    der.put(s, Scope.operator(), device, DER_ID, SETTINGS, now)
    return device


def registered_cast(database: Any, cast: dict[str, Any], client_for: Any) -> dict[str, int]:
    """The cast's owner and other registered by the operator; managed registered (in band, POST
    /edev) by the aggregator. Their device ids by role."""
    from server.sep2 import codec
    from server.sep2.models import EndDevice
    from server.services.sep2 import edev

    with database.transaction() as s:
        owner = edev.register_out_of_band(s, cast["owner"].lfdi, 100).id
        other = edev.register_out_of_band(s, cast["other"].lfdi, 100).id
    body = codec.render(EndDevice(lfdi=cast["managed"].lfdi, sfdi=cast["managed"].sfdi, changed_time=0))
    resp = client_for(cast["aggregator"]).post("/edev", data=body)
    assert resp.status_code == 201
    managed = int(resp.headers["Location"].rsplit("/", 1)[1])
    return {"owner": owner, "other": other, "managed": managed}


def mirror(database: Any, device_lfdi: str, start: int, watts: list[int], step: int = 900,
           now: int = PUBLISH_AT) -> None:
    """POST readings the way a device does (services.mup), one reading per `step`."""
    from server.services.sep2 import mup as mup_service

    readings = [Reading(time_period=DateTimeInterval(start=start + i * step, duration=step), value=w,
                        quality_flags="01") for i, w in enumerate(watts)]
    # A MirrorMeterReading mRID belongs to one device (services.sep2.mup): derived from the LFDI.
    mmr = MirrorMeterReading(mrid=f"A{device_lfdi[:31]}", reading_type=RT_W, mirror_reading_sets=[
        MirrorReadingSet(mrid=f"B{start:031X}", time_period=DateTimeInterval(start=start, duration=step * len(watts)),
                         readings=readings)])
    mup = MirrorUsagePoint(mrid="0123456789ABCDEF0123456789ABCDEF", device_lfdi=device_lfdi, role_flags="03",
                           service_category_kind=0, status=1, mirror_meter_readings=[mmr])
    with database.transaction() as s:
        mup_service.post_mirror_usage_point(s, Scope.operator(), mup, now)


def make_world(database: Any, **program_over: Any) -> dict[str, Any]:
    """The program (PROGRAM with `program_over`), 3 enrolled batteries with history, the window
    published (not yet settled). Returns {"program", "devices", "lfdis", "enrollments"}."""
    from server.services.flex import enrollments, programs as flex, publishing, windows

    now = PUBLISH_AT - 10 * DAY
    lfdis = [lfdi(f"battery-{i}") for i in range(3)]
    with database.transaction() as s:
        devices = [rated_battery(s, x, now) for x in lfdis]
        program = flex.create_program(s, {**PROGRAM, **program_over}, now)
        enrolled = [enrollments.enroll(s, program["id"], {"device_id": d, "customer": f"customer-{i}", "offer": OFFER},
                                   now)["id"] for i, d in enumerate(devices)]
    for x in lfdis:  # five earlier days: 3 kW over 15:00–18:00 local (the window and an hour before)
        for back in range(1, 6):
            mirror(database, x, START - back * DAY - 3600, [3000] * 12)
    with database.transaction() as s:
        windows.plan_windows(s, PUBLISH_AT - DAY, 7 * DAY)
    assert publishing.run_window(database, program["id"], KEY, PUBLISH_AT)["devices"] == 3
    return {"program": program["id"], "devices": devices, "lfdis": lfdis, "enrollments": enrolled}


def deliver(database: Any, world: dict[str, Any], watts: tuple[int, ...] = EVENT_W, start: int = START,
            now: int = END) -> None:
    for x, w in zip(world["lfdis"], watts):
        mirror(database, x, start, [w] * 8, now=now)


def settle(database: Any, world: dict[str, Any], now: int = SETTLED_AT, key: str = KEY) -> dict[str, Any] | None:
    from server.services.flex import settlement

    return settlement.settle_window(database, world["program"], key, now)

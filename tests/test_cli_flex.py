"""`derflex flex …` as a utility operator meets it: help, programs, grid nodes, enrollments,
windows, and above all the dry run (numbers checked by hand, the picture checked as a PNG), with
every mistake answered by one line on standard error and no traceback.

Runs on the `database` fixture: SQLite, or PostgreSQL with DERFLEX_TEST_DATABASE_URL.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from server.cli import main
from server.cli.flex import flex_group
from server.cli.scheduler import scheduler

LFDIS = ["11" * 20, "22" * 20, "33" * 20, "44" * 20]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PROGRAM = {
    "name": "Peak Saver",
    "currency": "USD",
    "window": {"weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
               "start": "16:00", "end": "21:00", "tz": "America/New_York"},
    "requested_kw": 30,
    "price_cap": 0.40,
    "incentive": {"kind": "pay_as_clear"},
    "eligible_kinds": ["battery", "ev_charger", "load"],
    "lead_time_s": 3600,
}


@pytest.fixture
def run(tmp_path: Path, database):  # noqa: ANN001, ANN201
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True, input: str | None = None):  # noqa: ANN202
        result = runner.invoke(main, ["--home", str(tmp_path), "--database-url", database.url, *args],
                               env={"DERFLEX_DATABASE_URL": "", "DERFLEX_HOME": ""}, input=input,
                               prog_name="derflex")
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


def fails(result, message: str, code: int = 1) -> str:  # noqa: ANN001
    """A refused command: exit `code`, nothing on stdout, ONE line on stderr naming the problem."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # handled, not a crash
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if code == 1:
        assert result.stdout == "", result.stdout
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert message in result.stderr, result.stderr
    return lines[-1]


def write(tmp_path: Path, name: str, value: object) -> str:
    path = tmp_path / name
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return str(path)


def register(run, n: int) -> list[int]:  # noqa: ANN001
    return [json.loads(run("admin", "register", lfdi).output)["id"] for lfdi in LFDIS[:n]]


def batteries(database, kw_by_device: dict[int, float]) -> None:  # noqa: ANN001
    """Each device reports a battery (DERType 80) of the given kW, available for days: its default
    curve is then 0 kW at the price floor rising linearly to that kW at the cap."""
    from server.scope import Scope
    from server.sep2.der import ActivePower, DERAvailability, DERCapability
    from server.services.sep2 import der

    now = int(time.time())
    with database.transaction() as s:
        for device_id, kw in kw_by_device.items():
            w = ActivePower(multiplier=3, value=int(kw))
            der.put(s, Scope.operator(), device_id, 1, DERCapability(
                modes_supported="00000001", rtg_max_w=w, rtg_max_charge_rate_w=w, rtg_max_discharge_rate_w=w,
                type=80), now)
            der.put(s, Scope.operator(), device_id, 1,
                    DERAvailability(availability_duration=10 * 86_400, reading_time=now - 10), now)


def next_window(run, program_id: int = 1) -> str:  # noqa: ANN001
    return json.loads(run("flex", "windows", str(program_id), "--json").output)[0]["key"]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    length, chunk = struct.unpack(">I4s", data[8:16])
    assert (length, chunk) == (13, b"IHDR")
    return struct.unpack(">II", data[16:24])


def has_colour(pixels: np.ndarray, hex_rgb: str, at_least: int) -> bool:
    rgb = np.array([int(hex_rgb[i:i + 2], 16) for i in (1, 3, 5)]) / 255.0
    return int((np.abs(pixels[..., :3] - rgb).max(axis=-1) < 0.02).sum()) >= at_least


# ---------------------------------------------------------------------------------------- help


def _commands(group, prefix=()):  # noqa: ANN001, ANN202
    for name, cmd in group.commands.items():
        yield (*prefix, name), cmd
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*prefix, name))


def test_every_flex_command_explains_itself(run) -> None:  # noqa: ANN001
    commands = [(("flex",), flex_group), *_commands(flex_group, ("flex",)), (("scheduler",), scheduler)]
    assert len(commands) >= 18
    for path, cmd in commands:
        out = run(*path, "--help").output
        assert out.startswith(f"Usage: derflex {' '.join(path)}"), out
        first = (cmd.help or "").strip().splitlines()[0]
        assert len(first) > 20 and first[:40] in " ".join(out.split()), (path, out)
    create = " ".join(run("flex", "program", "create", "--help").output.split())
    for words in ("JSON file", "'-' for standard input", "requested_kw: kW of load reduction",
                  "currency per kWh", "derflex flex program create peak-saver.json"):
        assert words in create
    dry = " ".join(run("flex", "dry-run", "--help").output.split())
    for words in ("--png", "--window", "clearing price", "feasible", "price cap", "largest device setpoints",
                  "derflex flex dry-run 1 --window"):
        assert words in dry
    enroll = " ".join(run("flex", "enroll", "--help").output.split())
    assert "--device or --lfdi" in enroll and '{"power": [[price, kW], …]}' in enroll and "default curve" in enroll
    assert "local date" in run("flex", "cancel-window", "--help").output
    assert "--once" in run("scheduler", "--help").output


# ------------------------------------------------------------------------------------ programs


def test_a_program_from_a_file_listed_and_shown(run, tmp_path: Path) -> None:  # noqa: ANN001
    out = run("flex", "program", "create", write(tmp_path, "peak.json", PROGRAM)).output
    assert re.match(r"program 1 'Peak Saver' created \(DER program \d+\)\n", out)
    assert re.search(r"  window \d{4}-\d\d-\d\d: \S+Z → \S+Z, published at \S+Z", out)

    listing = run("flex", "program", "list").output
    assert re.match(r"   1  Peak Saver\s+active\s+no enrollments; next window \d{4}-\d\d-\d\d \(planned\)", listing)
    [brief] = json.loads(run("flex", "program", "list", "--json").output)
    assert (brief["id"], brief["name"], brief["state"], brief["version"]) == (1, "Peak Saver", "active", 1)

    shown = json.loads(run("flex", "program", "show", "1").output)
    spec = shown["program"]
    assert (spec["requested_kw"], spec["price_cap"], spec["currency"]) == (30.0, 0.4, "USD")
    assert spec["window"]["start"].startswith("16:00") and spec["window"]["tz"] == "America/New_York"
    assert shown["enrollments"] == {} and len(shown["next_windows"]) == 3


def test_programs_from_inline_json_and_standard_input(run) -> None:  # noqa: ANN001
    inline = json.dumps({**PROGRAM, "name": "Inline"})
    assert "program 1 'Inline' created" in run("flex", "program", "create", inline).output
    piped = json.dumps({**PROGRAM, "name": "Piped", "requested_kw": [10, 20], "interval_s": 9000})
    assert "program 2 'Piped' created" in run("flex", "program", "create", "-", input=piped).output
    assert json.loads(run("flex", "program", "show", "2").output)["program"]["requested_kw"] == [10.0, 20.0]


def test_update_then_cancel_a_program(run, tmp_path: Path) -> None:  # noqa: ANN001
    run("flex", "program", "create", write(tmp_path, "peak.json", PROGRAM))
    out = run("flex", "program", "update", "1", '{"requested_kw": 40}').output
    assert out == "program 1 'Peak Saver' is at version 2\n"
    assert json.loads(run("flex", "program", "show", "1").output)["program"]["requested_kw"] == 40.0
    assert "program 1 'Peak Saver' is cancelled" in run("flex", "program", "cancel", "1", "--yes").output
    windows = json.loads(run("flex", "windows", "1", "--json").output)
    assert windows and {w["state"] for w in windows} == {"cancelled"}
    fails(run("flex", "program", "update", "1", '{"requested_kw": 50}', ok=False), "program 1 is cancelled")


# ---------------------------------------------------------------------------------- grid nodes


def test_grid_nodes_and_a_program_limited_to_them(run, tmp_path: Path) -> None:  # noqa: ANN001
    assert run("flex", "node", "list").output == "no grid nodes\n"
    out = run("flex", "node", "put", "sub-1", "--root", "--max-forward-kw", "900", "--current-load-kw", "800").output
    assert out == "node sub-1: parent -, adder 0.0000, path adder 0.0000/kWh, limits fwd 900.0 rev None kW\n"
    out = run("flex", "node", "put", "feeder-3", "--parent", "sub-1", "--load-percent", "50",
              "--adder-per-percent", "0.001").output
    assert "node feeder-3: parent sub-1, adder 0.0500, path adder 0.0500/kWh" in out
    listing = run("flex", "node", "list").output
    assert re.search(r"feeder-3\s+parent sub-1\s+path adder 0\.0500", listing)
    assert re.search(r"sub-1\s+parent -\s+path adder 0\.0000\s+load 800\.0 kW\s+fwd≤900\.0", listing)

    run("flex", "program", "create", write(tmp_path, "p.json", {**PROGRAM, "grid_node_ids": ["sub-1"]}))
    [device] = register(run, 1)
    fails(run("flex", "enroll", "1", "--device", str(device), "--customer", "A", "--kind", "load", ok=False),
          "grid_node is required: this program covers sub-1")
    out = run("flex", "enroll", "1", "--device", str(device), "--customer", "A", "--kind", "load",
              "--grid-node", "feeder-3").output
    assert out == f"enrollment 1: device {device} (load) is active\n"
    assert re.search(r"node feeder-3", run("flex", "enrollments", "1").output)
    fails(run("flex", "node", "delete", "feeder-3", ok=False), "has enrolled devices behind it")
    fails(run("flex", "node", "delete", "sub-1", ok=False), "has child nodes")
    fails(run("flex", "node", "delete", "nowhere", ok=False), "no grid node 'nowhere'")
    fails(run("flex", "node", "put", "x", "--parent", "nowhere", ok=False), "parent: no grid node 'nowhere'")
    fails(run("flex", "node", "put", "x", "--parent", "sub-1", "--root", ok=False), "contradict", code=2)


# --------------------------------------------------------------------------------- enrollments


def test_enrolling_devices_by_id_and_lfdi(run, tmp_path: Path, database) -> None:  # noqa: ANN001
    run("flex", "program", "create", write(tmp_path, "peak.json", PROGRAM))
    ids = register(run, 4)
    batteries(database, {ids[0]: 5, ids[1]: 10})
    # the kind comes from the DERType the device reported (80: storage → battery)
    assert run("flex", "enroll", "1", "--device", str(ids[0]), "--customer", "Ann").output == \
        f"enrollment 1: device {ids[0]} (battery) is active\n"
    assert f"device {ids[1]} (battery) is active" in \
        run("flex", "enroll", "1", "--lfdi", LFDIS[1].lower(), "--customer", "Bob").output
    fails(run("flex", "enroll", "1", "--device", str(ids[2]), "--customer", "Cy", ok=False), "kind is required")
    offer = '{"power": [[0.0, -10], [0.2, -4]]}'
    assert "is pending" in run("flex", "enroll", "1", "--device", str(ids[2]), "--customer", "Cy", "--kind", "load",
                               "--offer", offer, "--pending").output
    fails(run("flex", "enroll", "1", "--device", str(ids[3]), "--customer", "Di", "--kind", "pv", ok=False),
          "a pv is not eligible for this program")
    fails(run("flex", "enroll", "1", "--device", str(ids[0]), "--customer", "Ann", ok=False),
          f"device {ids[0]} is enrolled in program 1 already")
    fails(run("flex", "enroll", "1", "--device", "999", "--customer", "X", "--kind", "load", ok=False),
          "no such EndDevice")

    table = run("flex", "enrollments", "1").output
    assert table.startswith("3 enrollment(s)\n")
    assert re.search(rf"device {ids[0]}\s+battery\s+active\s+Ann\s+default curve\s+node -", table)
    assert re.search(rf"device {ids[2]}\s+load\s+pending\s+Cy\s+power", table)
    listed = json.loads(run("flex", "enrollments", "1", "--json").output)
    assert listed["enrollments"][2]["offer"] == {"power": [[0.0, -10], [0.2, -4]]}

    assert run("flex", "enrollment", "1", "3", "confirm").output == "enrollment 3 is active\n"
    assert run("flex", "enrollment", "1", "1", "pause").output == "enrollment 1 is paused\n"
    assert run("flex", "enrollment", "1", "1", "resume").output == "enrollment 1 is active\n"
    assert re.search(r"Peak Saver\s+active\s+3 active;", run("flex", "program", "list").output)
    fails(run("flex", "enrollment", "1", "99", "pause", ok=False), "no enrollment 99 in program 1")


# ------------------------------------------------------------------------------------- windows


def test_listing_and_cancelling_windows(run, tmp_path: Path) -> None:  # noqa: ANN001
    run("flex", "program", "create", write(tmp_path, "peak.json", PROGRAM))
    listing = run("flex", "windows", "1").output.splitlines()
    assert len(listing) >= 6  # one window a day for the coming week
    assert all(re.match(r"\d{4}-\d\d-\d\d  \S+Z → \S+Z  planned$", line) for line in listing), listing
    key = next_window(run)
    shown = json.loads(run("flex", "window", "1", key).output)
    assert (shown["key"], shown["state"], shown["revision"], shown["intervals"]) == (key, "planned", 0, [])

    assert run("flex", "cancel-window", "1", key).output == f"window {key} is cancelled\n"
    assert re.search(rf"{key}  .*  cancelled  \(cancelled by the operator\)", run("flex", "windows", "1").output)
    fails(run("flex", "cancel-window", "1", key, ok=False), f"window {key} is cancelled")
    fails(run("flex", "cancel-window", "1", "1999-01-01", ok=False), "program 1 has no window '1999-01-01'")
    fails(run("flex", "window", "1", "1999-01-01", ok=False), "program 1 has no window '1999-01-01'")


def test_the_scheduler_publishes_and_cancelling_a_window_cancels_its_events(run, tmp_path, database) -> None:  # noqa: ANN001
    """With a week's lead time every planned window is due: `scheduler --once` clears and publishes
    them (the four batteries of the dry-run test: 30 kW at 0.24); cancelling one cancels its events."""
    run("flex", "program", "create", write(tmp_path, "peak.json", {**PROGRAM, "lead_time_s": 7 * 86_400}))
    ids = register(run, 4)
    batteries(database, dict(zip(ids, (5, 10, 15, 20))))
    for device in ids:
        run("flex", "enroll", "1", "--device", str(device), "--customer", "c")
    key = next_window(run)
    out = run("scheduler", "--once").output
    assert f"program 'Peak Saver' window {key} rev 1: 4 devices; 30.0 kW asked, 30.0 kW cleared at 0.2400" in out

    listing = run("flex", "windows", "1").output
    assert re.search(rf"{key}  \S+ → \S+  published rev 1\n    \S+ → \S+  asked 30\.0 kW, cleared 30\.0 kW "
                     r"at 0\.2400 USD/kWh \(fleet offers 50\.0 kW at the cap\)", listing), listing
    shown = json.loads(run("flex", "window", "1", key, "--top", "1").output)
    [iv] = shown["intervals"]
    assert (shown["state"], iv["price"], iv["quantity_kw"], iv["feasible"]) == ("published", 0.24, 30.0, True)
    assert [(s["device_id"], s["reduction_kw"]) for s in iv["top_setpoints"]] == [(ids[3], 12.0)]
    assert "(published)" not in run("flex", "dry-run", "1", "--window", key, "--no-png").output  # no note

    der_program = json.loads(run("flex", "program", "show", "1").output)["der_program_id"]
    mrids = {iv["top_setpoints"][0]["event_mrid"]}
    assert run("flex", "cancel-window", "1", key).output == f"window {key} is cancelled\n"
    events = json.loads(run("event", "list", str(der_program), "--all", "--json", "--limit", "100").output)["events"]
    of_window = [e for e in events if e["start"] == int(_iso_seconds(iv["start"]))]
    assert len(of_window) == 4 and {e["state"] for e in of_window} == {"cancelled"}
    assert mrids <= {e["mrid"] for e in of_window}
    assert {e["state"] for e in events if e not in of_window} == {"scheduled"}  # the other windows stand


def _iso_seconds(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# ------------------------------------------------------------------------------------- dry run


def test_dry_run_of_four_batteries(run, tmp_path: Path, database) -> None:  # noqa: ANN001
    """Default curves 0 kW at price 0 rising to 5, 10, 15, 20 kW at the 0.40 cap: the fleet offers
    F(p) = 50 kW × p / 0.40 = 125 p. Asked 30 kW it clears at p = 30 / 125 = 0.24 USD/kWh, and
    each battery gives its share 0.24 / 0.40 = 60 % of its rating: 3, 6, 9, 12 kW."""
    run("flex", "program", "create", write(tmp_path, "peak.json", PROGRAM))
    ids = register(run, 4)
    batteries(database, dict(zip(ids, (5, 10, 15, 20))))
    for i, device in enumerate(ids):
        run("flex", "enroll", "1", "--device", str(device), "--customer", f"c{i}")
    key = next_window(run)
    png = tmp_path / "pictures" / "supply.png"
    png.parent.mkdir()

    out = run("flex", "dry-run", "1", "--png", str(png)).output
    lines = out.splitlines()
    assert lines[0] == (f"dry run of 'Peak Saver', window {key} (16:00–21:00 America/New_York): "
                        "4 devices; nothing is published")
    assert lines[1] == "  aggregate supply curve, price (USD/kWh) → kW of reduction offered:"
    assert lines[2] == "    " + "   ".join(f"{p} → {q:.1f}" for p, q in zip(
        ["0", "0.04", "0.08", "0.12", "0.16", "0.2", "0.24", "0.28", "0.32", "0.36", "0.4"], range(0, 51, 5)))
    assert lines[3] == ("  16:00–21:00  asked 30.0 kW: clearing price 0.2400 USD/kWh, quantity 30.0 kW, "
                        "feasible (the fleet offers 50.0 kW at the cap)")
    assert lines[4] == "  largest setpoints, kW of reduction and the price each device sees:"
    setpoints = [re.match(r"    device (\d+)\s+([\d.]+) kW at ([\d.]+) USD/kWh$", line).groups() for line in lines[5:9]]
    assert setpoints == [(str(d), kw, "0.2400") for d, kw in zip(ids[::-1], ("12.000", "9.000", "6.000", "3.000"))]
    assert lines[9:] == [f"  picture: {png}"]

    data = png.read_bytes()
    assert png_size(data) == (960, 600) and len(data) > 30_000
    from matplotlib.image import imread

    pixels = imread(str(png))
    for colour in ("#1f77b4", "#d62728", "#2ca02c", "#7f7f7f"):  # curve, request, clearing point, cap
        assert has_colour(pixels, colour, 100), colour

    # --json says the same, and a dry run publishes nothing
    view = json.loads(run("flex", "dry-run", "1", "--window", key, "--no-png", "--top", "2", "--json").output)
    [iv] = view["intervals"]
    assert (iv["price"], iv["quantity_kw"], iv["feasible"], iv["available_at_cap_kw"]) == \
        (pytest.approx(0.24), pytest.approx(30.0), True, pytest.approx(50.0))
    top = [(s["device_id"], round(s["reduction_kw"], 6)) for s in iv["top_setpoints"]]
    assert top == [(ids[3], 12.0), (ids[2], 9.0)]
    assert view["aggregate_curve"][-1] == [0.4, 50.0] and "png" not in view
    window = json.loads(run("flex", "window", "1", key).output)
    assert (window["state"], window["revision"], window["intervals"]) == ("planned", 0, [])


def test_dry_run_of_mixed_curves_and_an_infeasible_interval(run, tmp_path, database, monkeypatch) -> None:  # noqa: ANN001
    """Two loads with power curves and two batteries with default curves (cap 0.40):
    load A [[0, -10], [0.2, -4]] offers 30 p up to 6 kW at 0.2; load B steps from -8 to -2 kW at
    0.10 (6 kW); batteries of 5 and 10 kW offer 37.5 p together. For 20 kW: above 0.2 both loads
    give 6, so 12 + 37.5 p = 20, p = 0.21333, batteries 2.667 and 5.333 kW. For 40 kW: the fleet
    has 6 + 6 + 15 = 27 kW at the cap, 13 kW short."""
    program = {**PROGRAM, "requested_kw": [20, 40], "interval_s": 9000}
    run("flex", "program", "create", write(tmp_path, "mixed.json", program))
    ids = register(run, 4)
    batteries(database, {ids[2]: 5, ids[3]: 10})
    run("flex", "enroll", "1", "--device", str(ids[0]), "--customer", "A", "--kind", "load",
        "--offer", '{"power": [[0.0, -10], [0.2, -4]]}')
    run("flex", "enroll", "1", "--device", str(ids[1]), "--customer", "B", "--kind", "load",
        "--offer", write(tmp_path, "b.json", {"power": [[0.10, -8], [0.10, -2]]}))
    for device in ids[2:]:
        run("flex", "enroll", "1", "--device", str(device), "--customer", "bat")
    monkeypatch.chdir(tmp_path)
    key = next_window(run)

    out = run("flex", "dry-run", "1", "--top", "4").output
    assert "  16:00–18:30  asked 20.0 kW: clearing price 0.2133 USD/kWh, quantity 20.0 kW, feasible " \
           "(the fleet offers 27.0 kW at the cap)\n" in out
    assert "  18:30–21:00  asked 40.0 kW: clearing price 0.4000 USD/kWh, quantity 27.0 kW, " \
           "INFEASIBLE: best effort at the cap, 13.0 kW short\n" in out
    assert "0.08 → 5.4" in out and "0.4 → 27.0" in out  # 30 × 0.08 + 0 + 37.5 × 0.08
    assert "  largest setpoints (18:30–21:00, the largest request), kW of reduction" in out
    assert re.search(rf"device {ids[3]}\s+10\.000 kW at 0\.4000", out)
    default_png = tmp_path / f"dry-run-1-{key}.png"
    assert f"  picture: {default_png.name}\n" in out and png_size(default_png.read_bytes()) == (960, 600)

    view = json.loads(run("flex", "dry-run", "1", "--no-png", "--json").output)
    first = view["intervals"][0]
    assert first["price"] == pytest.approx(8 / 37.5, abs=1e-6)
    reductions = {s["device_id"]: s["reduction_kw"] for s in first["top_setpoints"]}
    assert reductions == pytest.approx({ids[0]: 6.0, ids[1]: 6.0, ids[2]: 8 / 3, ids[3]: 16 / 3}, abs=1e-6)


def test_dry_run_without_devices_draws_nothing(run, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    run("flex", "program", "create", write(tmp_path, "peak.json", PROGRAM))
    monkeypatch.chdir(tmp_path)
    out = run("flex", "dry-run", "1").output
    assert "0 devices" in out and "asked 30.0 kW: no device can take part" in out
    assert "no picture" in out and not list(tmp_path.glob("*.png"))


def test_dry_run_says_when_the_window_will_not_be_published(run, tmp_path: Path) -> None:  # noqa: ANN001
    run("flex", "program", "create", write(tmp_path, "peak.json", PROGRAM))
    key = next_window(run)
    run("flex", "cancel-window", "1", key)
    out = run("flex", "dry-run", "1", "--window", key, "--no-png").output
    assert "note: the program is active and this window is cancelled: the scheduler will not publish it" in out


def test_dry_run_by_default_skips_a_cancelled_window(run, tmp_path: Path) -> None:  # noqa: ANN001
    run("flex", "program", "create", write(tmp_path, "peak.json", PROGRAM))
    first, second = (w["key"] for w in json.loads(run("flex", "windows", "1", "--json").output)[:2])
    run("flex", "cancel-window", "1", first)
    assert f"window {second} " in run("flex", "dry-run", "1", "--no-png").output


# -------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("program", "show", "9"), "no flexibility program 9"),
        (("program", "update", "9", '{{"requested_kw": 1}}'), "no flexibility program 9"),
        (("program", "cancel", "9", "--yes"), "no flexibility program 9"),
        (("windows", "9"), "no flexibility program 9"),
        (("enrollments", "9"), "no flexibility program 9"),
        (("enroll", "9", "--device", "1", "--customer", "x"), "no flexibility program 9"),
        (("dry-run", "9"), "no flexibility program 9"),
        (("dry-run", "1", "--window", "1999-01-01"), "program 1 has no window '1999-01-01'"),
        (("program", "create", "{missing}"), "cannot read {missing}: No such file or directory"),
        (("program", "create", "{folder}"), "cannot read {folder}: Is a directory"),
        (("program", "create", "{not_json}"), "{not_json} is not valid JSON: Expecting value at line 1, column 1"),
        (("program", "create", "{binary}"), "{binary} is not a JSON text: it is not UTF-8"),
        (("program", "create", "{{nope"), "SOURCE (inline JSON) is not valid JSON"),
        (("program", "create", '{{"name": "x"}}'), "currency: required"),
        (("program", "create", "{bad_cap}"), "price_cap: must be greater than 0"),
        (("program", "create", "{bad_currency}"), "currency: must be an ISO 4217 code"),
        (("program", "create", "{unknown_key}"), "colour"),
        (("program", "create", "{peak}"), "a program named 'Peak Saver' exists already"),
        (("program", "update", "1", "{{}}"), "send a JSON object with the fields to change"),
        (("enroll", "1", "--device", "1", "--customer", "x", "--kind", "load", "--offer", "{{bad"),
         "--offer (inline JSON) is not valid JSON"),
        (("enroll", "1", "--device", "1", "--customer", "x", "--kind", "load",
          "--offer", '{{"power": [[0.1, -2], [0.2, -5]]}}'), "offer: power curve point 1"),
        (("dry-run", "1", "--png", "{missing_folder}"), "cannot write the picture to {missing_folder}"),
    ],
)
def test_mistakes_are_one_line_on_stderr(run, tmp_path, args, message) -> None:  # noqa: ANN001
    files = {
        "missing": str(tmp_path / "missing.json"),
        "folder": str(tmp_path),
        "not_json": write(tmp_path, "notes.txt", "requested_kw = 30\n"),
        "binary": str(tmp_path / "binary.json"),
        "bad_cap": write(tmp_path, "cap.json", {**PROGRAM, "name": "Cap", "price_cap": -1}),
        "bad_currency": write(tmp_path, "cur.json", {**PROGRAM, "name": "Cur", "currency": "usd"}),
        "unknown_key": write(tmp_path, "key.json", {**PROGRAM, "name": "Key", "colour": "red"}),
        "peak": write(tmp_path, "peak.json", PROGRAM),
        "missing_folder": str(tmp_path / "no-such-folder" / "supply.png"),
    }
    (tmp_path / "binary.json").write_bytes(b"\x89PNG\xff\xfe")
    run("flex", "program", "create", files["peak"])
    assert register(run, 1) == [1]
    if args[0] == "dry-run":  # something to draw
        run("flex", "enroll", "1", "--device", "1", "--customer", "c", "--kind", "load",
            "--offer", '{"power": [[0.0, -10], [0.2, -4]]}')
    args = tuple(a.format(**files) for a in args)
    fails(run("flex", *args, ok=False), message.format(**files))


def test_the_installed_command_never_prints_a_traceback(tmp_path: Path) -> None:
    """The real entry point, in its own process: exit 1 and one line, for a file that is not there."""
    derflex = Path(sys.executable).with_name("derflex")
    result = subprocess.run([str(derflex), "--home", str(tmp_path), "flex", "program", "create", "nope.json"],
                            capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "DERFLEX_DATABASE_URL": ""})
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == ["Error: cannot read nope.json: No such file or directory"]

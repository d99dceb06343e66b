"""Envelope programs through the admin API (/admin/api/v1/flex/programs) and the CLI: authored with
an "envelope", refused with the wrong field named (nothing stored), published, and served to the
device as a DERControl whose csipaus:opModExpLimW is valid against the 2018 and csipaus schemas."""

from __future__ import annotations

import json

import pytest

from server.sep2 import codec
from server.sep2.der import ActivePower
from server.sep2.derp import DERControlList
from tests.api.test_admin_flex import EVERY_DAY, device_clock, epoch, next_window, ok, problem  # noqa: F401
from tests.builders import registered_cast


def envelope_body(**over) -> dict:  # noqa: ANN003
    return {
        "name": "Solar soak", "currency": "AUD",
        "window": {"weekdays": EVERY_DAY, "start": "10:00", "end": "15:00", "tz": "Australia/Sydney"},
        "price_cap": 0.5, "incentive": {"kind": "fixed", "rate_per_kwh": 0.08},
        "eligible_kinds": ["pv", "battery"], "envelope": {"export_limit_kw": 1.5}, **over,
    }


def test_an_envelope_program_is_authored_and_shown(operator) -> None:  # noqa: ANN001
    view = ok(operator("POST", "/flex/programs", json=envelope_body()), 201)
    assert view["program"]["envelope"] == {"export_limit_kw": 1.5, "import_limit_kw": None}
    assert view["program"]["requested_kw"] == 0.0
    got = ok(operator("GET", f"/flex/programs/{view['id']}"))
    assert got["program"]["envelope"] == view["program"]["envelope"]
    changed = ok(operator("PATCH", f"/flex/programs/{view['id']}", json={"envelope": {"import_limit_kw": 5}}))
    assert changed["program"]["envelope"] == {"export_limit_kw": None, "import_limit_kw": 5.0}
    assert changed["version"] == view["version"] + 1


@pytest.mark.parametrize(("over", "field", "message"), [
    ({"envelope": {}}, "envelope.export_limit_kw", "give export_limit_kw, import_limit_kw or both"),
    ({"envelope": {"export_limit_kw": -1}}, "envelope.export_limit_kw", "from 0 to"),
    ({"envelope": {"export_limit_kw": "1.5"}}, "envelope.export_limit_kw", "a number of kW"),
    ({"envelope": {"exportLimit": 1}}, "envelope.exportLimit", "unknown field"),
    ({"envelope": "1.5 kW"}, "envelope", "must be an object"),
    ({"requested_kw": 5}, "requested_kw", "asks for limits, not for a reduction"),
    ({"incentive": {"kind": "pay_as_clear"}}, "incentive.kind", "no clearing price"),
])
def test_a_wrong_envelope_is_a_400_naming_the_field_and_stores_nothing(operator, over, field, message) -> None:  # noqa: ANN001
    resp = operator("POST", "/flex/programs", json=envelope_body(**over))
    assert message in problem(resp, 400)
    assert resp.get_json().get("field") == field
    assert ok(operator("GET", "/flex/programs"))["programs"] == []
    assert ok(operator("GET", "/der-programs"))["programs"] == []


def test_the_device_is_served_its_sites_export_limit(operator, cast, client_for, database, device_clock,  # noqa: F811
                                                     sep2_schema) -> None:  # noqa: ANN001
    from server.services.flex import publishing

    ids = registered_cast(database, cast, client_for)
    program = ok(operator("POST", "/flex/programs", json=envelope_body()), 201)
    p = f"/flex/programs/{program['id']}"
    for who in ("owner", "other"):
        ok(operator("POST", f"{p}/enrollments", json={"device_id": ids[who], "customer": who, "kind": "pv"}), 201)
    w = next_window(operator, p)
    out = publishing.run_window(database, program["id"], w["key"], epoch(w["publish_at"]))
    assert (out["action"], out["devices"]) == ("publish", 2)
    device_clock(epoch(w["publish_at"]) + 1)
    got = client_for(cast["owner"]).get(f"/edev/{ids['owner']}/derp/{program['der_program_id']}/derc?l=10")
    assert got.status_code == 200
    sep2_schema(got.data)  # csipaus-core.xsd and the 2018 schema
    [control] = codec.parse(got.data, DERControlList).der_controls
    assert control.der_control_base.op_mod_exp_lim_w == ActivePower(value=1500, multiplier=0)
    assert control.der_control_base.op_mod_fixed_w is None and control.der_control_base.op_mod_max_lim_w is None
    assert (control.interval.start, control.interval.duration) == (epoch(w["start"]), 5 * 3600)
    window = ok(operator("GET", f"{p}/windows/{w['key']}"))
    [iv] = window["intervals"]
    assert (iv["requested_kw"], iv["devices"]) == (0.0, 2)
    assert {s["event_mrid"] for s in iv["top_setpoints"]} >= {control.mrid}


def test_the_cli_authors_an_envelope_program(tmp_path, settings, database) -> None:  # noqa: ANN001
    from click.testing import CliRunner

    from server.cli import main

    path = tmp_path / "soak.json"
    path.write_text(json.dumps(envelope_body()))
    runner = CliRunner()
    env = {"DERFLEX_DATABASE_URL": "", "DERFLEX_HOME": ""}
    base = ["--home", str(tmp_path), "--database-url", database.url]
    got = runner.invoke(main, [*base, "flex", "program", "create", str(path)], env=env)
    assert got.exit_code == 0, got.output
    assert "'Solar soak' created" in got.output
    bad = runner.invoke(main, [*base, "flex", "program", "create",
                              json.dumps(envelope_body(envelope={"export_limit_kw": -2}))], env=env)
    assert bad.exit_code != 0 and "envelope.export_limit_kw" in bad.output
    shown = runner.invoke(main, [*base, "flex", "program", "show", "1"], env=env)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["program"]["envelope"]["export_limit_kw"] == 1.5

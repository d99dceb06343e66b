"""What a v2 contract says about its meters beyond their LFDIs (server.services.bpp.v2contracts):

* `energyResources[]` in the seller's inputs (DEG EnergyResource objects linked to a participating
  meter by `meterId`) give a meter's kind by `type` (BESS, EV_CHARGER, CONTROLLABLE_LOAD …): a
  controllable load reports DERType 0, which says nothing, so without it the meter is refused;
  with it the load enrolls as a load and its share of the bid is sized by its rating;
* a program that covers exactly one grid node places the contract's meters there (v2 has no field
  of ours for it); one covering several refuses them, as a v1 order without a grid node.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from der_sim.bap_v2 import cleared, contract_message
from server.beckn_v2 import envelope
from server.beckn_v2.context import context_from_json
from server.beckn_v2.errors import V2Error
from server.db import flex as store
from server.scope import Scope
from server.sep2.der import ActivePower, DERCapability, DERSettings
from server.services.bpp import v2contracts
from server.services.bpp.provider import Provider
from server.services.flex import grid_nodes, programs as flex
from server.services.sep2 import der, edev
from server.services.sep2.der import DER_ID
from tests.builders import PROGRAM, PUBLISH_AT, lfdi, rated_battery

PROVIDER = Provider(bpp_id="bpp.flex.example", bpp_uri="https://bpp.flex.example/beckn")
NOW = PUBLISH_AT - 86_400
PERIOD = ("2026-11-30T21:00:00Z", "PT1H")
BID = [([0.10, 0.30], [2.0, 4.0]), ([0.20], [3.0])]  # 6 kW of a 5 kW battery and a 3 kW load
BATTERY, LOAD = lfdi("v2-meters-battery"), lfdi("v2-meters-load")


def call(database, action: str, message: dict[str, Any], txn: str) -> dict[str, Any]:  # noqa: ANN001
    ctx = {"version": "2.0.0", "action": action, "bapId": "bap.v2.example", "bapUri": "https://bap.v2.example/beckn",
           "bppId": PROVIDER.bpp_id, "bppUri": PROVIDER.v2_uri, "transactionId": txn, "messageId": str(uuid.uuid4()),
           "timestamp": datetime.fromtimestamp(NOW, UTC).isoformat().replace("+00:00", "Z")}
    with database.transaction() as s:
        return v2contracts.handle(s, envelope.Request(context_from_json(ctx, action=action), message), PROVIDER, NOW)


def world(database, nodes: list[str]) -> int:  # noqa: ANN001
    """A 5 kW battery, a 3 kW controllable load (DERType 0: no kind), grid nodes, the program."""
    with database.transaction() as s:
        rated_battery(s, BATTERY, NOW - 60)
        load = edev.register_out_of_band(s, LOAD, NOW - 60).id
        der.put(s, Scope.operator(), load, DER_ID, DERCapability(
            modes_supported="00000080", rtg_max_w=ActivePower(multiplier=0, value=3000), type=0), NOW - 60)
        der.put(s, Scope.operator(), load, DER_ID, DERSettings(
            modes_enabled="00000080", set_grad_w=100, set_max_w=ActivePower(multiplier=0, value=3000),
            updated_time=0), NOW - 60)
        grid_nodes.put_grid_node(s, {"name": "substation-1"}, NOW - 60)
        for name in nodes:
            if name != "substation-1":
                grid_nodes.put_grid_node(s, {"name": name, "parent": "substation-1"}, NOW - 60)
        return flex.create_program(s, {**PROGRAM, "eligible_kinds": ["battery", "load"], "grid_node_ids": nodes},
                                   NOW - 60)["id"]


def message(program: int, *, types: dict[str, str] | None, bid: Any = None, cid: str | None = None) -> dict[str, Any]:
    return contract_message(program, meters=[BATTERY, f"did:web:meters.example:{LOAD}"], seller="customer-ada",
                            bid=bid, contract_id=cid, period=PERIOD, currency="USD", resource_types=types)


def test_energy_resources_give_a_load_its_kind_and_one_grid_node_places_the_meters(database) -> None:  # noqa: ANN001
    program = world(database, ["feeder-7"])
    txn = str(uuid.uuid4())
    with pytest.raises(V2Error) as err:  # the load's DERType says nothing: refused, naming it
        call(database, "init", message(program, types=None), txn)
    assert err.value.code == "40000" and "participatingMeters[1]" in err.value.path
    assert "kind is required" in err.value.message
    types = {BATTERY: "BESS", f"did:web:meters.example:{LOAD}": "CONTROLLABLE_LOAD"}
    cid = call(database, "init", message(program, types=types), txn)["contract"]["id"]
    answer = call(database, "confirm", message(program, types=types, bid=BID, cid=cid), txn)["contract"]
    assert answer["status"]["code"] == "ACTIVE"
    assert [kw for kw, _ in cleared(answer)] == [6.0, 3.0]
    with database.transaction() as s:
        node = store.grid_node_by_name(s, "feeder-7").id
        rows = {e.device_kind: e for e in store.enrollments(s, program)}
        offers = {k: e.offer for k, e in rows.items()}
    assert sorted(rows) == ["battery", "load"]
    assert {e.grid_node_id for e in rows.values()} == {node} and {e.external_ref for e in rows.values()} == {cid}
    assert all(offers.values())  # each meter's share of the bid (5 : 3 by their ratings)


@pytest.mark.parametrize(("resources", "path", "code"), [
    ([{"meterId": lfdi("someone-else"), "type": "BESS"}], "energyResources[0].meterId", "30000"),
    ([{"meterId": BATTERY, "type": "WIND"}], "energyResources[0].type", "40000"),
    ([{"type": "BESS"}], "energyResources[0].meterId", "30000"),
    ({"meterId": BATTERY}, "energyResources", "30000"),
])
def test_energy_resources_that_name_no_meter_or_no_flexible_type_are_refused(database, resources, path,  # noqa: ANN001
                                                                             code: str) -> None:
    program = world(database, ["feeder-7"])
    msg = message(program, types={BATTERY: "BESS"})
    msg["contract"]["commitments"][0]["offer"]["offerAttributes"]["inputs"][0]["inputs"]["energyResources"] = resources
    with pytest.raises(V2Error) as err:
        call(database, "init", msg, str(uuid.uuid4()))
    assert err.value.code == code and err.value.path.endswith(path), (err.value.path, err.value.message)


def test_a_program_over_several_grid_nodes_needs_them_named(database) -> None:  # noqa: ANN001
    program = world(database, ["feeder-7", "feeder-8"])
    types = {BATTERY: "BESS", f"did:web:meters.example:{LOAD}": "CONTROLLABLE_LOAD"}
    with pytest.raises(V2Error) as err:
        call(database, "init", message(program, types=types), str(uuid.uuid4()))
    assert err.value.code == "40000" and "grid_node is required" in err.value.message

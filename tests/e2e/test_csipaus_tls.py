"""CSIP-AUS through a real `derflex serve` over TLS 1.2 / CCM8, operated by the CLI from other
processes (straight on the database): a site's DOE export limit reaches the device at that
connection point; the device sets its ConnectionPoint; a revoked certificate is refused by the
running server within a second, and restored."""

from __future__ import annotations

import json
import time

import pytest

from server.sep2 import codec
from server.sep2.csipaus import CSIPAUS_NS, ConnectionPoint
from server.sep2.der import ActivePower
from server.sep2.derp import DERControlList
from server.sep2.models import NS, DeviceCapability, EndDevice, EndDeviceList
from tests.e2e.test_fsa_tls import cli
from tests.e2e.test_serve_tls import connect, request

pytestmark = pytest.mark.e2e

NMI = "41020000002"


def test_a_sites_doe_reaches_its_device_and_a_revoked_client_is_refused(server, sep2_schema) -> None:  # noqa: ANN001
    demo = server.pki.load("demo-1")
    conn = connect(server, demo)

    def get(path: str, model: type):  # noqa: ANN202
        resp, body = request(conn, "GET", path)
        assert resp.status == 200, (path, body)
        sep2_schema(body)
        return codec.parse(body, model)

    dcap = get("/dcap", DeviceCapability)
    (me,) = get(dcap.end_device_list_link.href + "?l=10", EndDeviceList).end_devices
    edev_id = int(me.href.rsplit("/", 1)[1])

    # the device sets its site through the link on its EndDevice, as CSIP-AUS clients do
    cp = (f'<csipaus:ConnectionPoint xmlns="{NS}" xmlns:csipaus="{CSIPAUS_NS}"><csipaus:connectionPointId>'
          f'{NMI}</csipaus:connectionPointId></csipaus:ConnectionPoint>').encode()
    resp, body = request(conn, "PUT", get(me.href, EndDevice).connection_point_link, cp)
    assert resp.status == 201, body
    assert get(resp.getheader("Location"), ConnectionPoint).connection_point_id == NMI
    assert json.loads(cli(server, "admin", "connection-points", "--json"))["connection_points"] == [
        {"connection_point_id": NMI, "device_ids": [edev_id]}]

    # an operator publishes a 1.5 kW export envelope to that site (another process)
    program = json.loads(cli(server, "der-program", "create", "--primacy", "1", "--json"))["id"]
    cli(server, "der-program", "members", "add", str(program), str(edev_id))
    made = json.loads(cli(server, "event", "create", str(program), "--start", "now", "--duration", "10m",
                          "--export-limit", "1500", "--connection-point", NMI, "--json"))["events"]
    assert [e["device_id"] for e in made] == [edev_id]
    deadline = time.monotonic() + 5
    while True:  # the server notices the other process's write within 250 ms
        controls = get(f"/edev/{edev_id}/derp/{program}/derc?l=10", DERControlList).der_controls
        if controls or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    (control,) = controls
    assert control.mrid == made[0]["mrid"] and control.event_status.current_status == 1
    assert control.der_control_base.op_mod_exp_lim_w == ActivePower(multiplier=0, value=1500)

    # revoked from another process: refused within a second, its cached answers included
    get("/dcap", DeviceCapability)
    cli(server, "admin", "client", "revoke", demo.lfdi, "--reason", "test")
    t0 = time.monotonic()
    while True:
        fresh = connect(server, demo)
        resp, body = request(fresh, "GET", "/dcap")
        fresh.close()
        if resp.status == 403:
            break
        assert time.monotonic() - t0 < 1.0, "a revoked certificate was still served after a second"
        time.sleep(0.05)
    assert b"<Error" in body
    resp, _ = request(fresh := connect(server, demo), "GET", f"/edev/{edev_id}/derp/{program}/derc?l=10")
    assert resp.status == 403
    fresh.close()
    other = connect(server, server.pki.load("demo-2"))
    assert request(other, "GET", "/dcap")[0].status == 200  # only that certificate

    cli(server, "admin", "client", "restore", demo.lfdi)
    t0 = time.monotonic()
    while True:
        fresh = connect(server, demo)
        status = request(fresh, "GET", "/dcap")[0].status
        fresh.close()
        if status == 200:
            break
        assert time.monotonic() - t0 < 1.0
        time.sleep(0.05)

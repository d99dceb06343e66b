"""FunctionSetAssignments through a real `derflex serve` over TLS 1.2 / CCM8: an operator makes an
FSA with `derflex fsa create` (another process, straight on the database) and the running server's
device sees it in its FunctionSetAssignmentsList within the cache's change-counter delay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from server.sep2 import codec
from server.sep2.derp import DERProgramList
from server.sep2.fsa import FunctionSetAssignments, FunctionSetAssignmentsList
from server.sep2.models import DeviceCapability, EndDevice, EndDeviceList
from tests.e2e.test_serve_tls import connect, request

pytestmark = pytest.mark.e2e


def cli(server, *args: str) -> str:  # noqa: ANN001
    done = subprocess.run([sys.executable, "-m", "server.cli", "--home", str(server.home), *args],
                          capture_output=True, text=True, timeout=60, cwd=server.home,
                          env={**os.environ, "DERFLEX_DATABASE_URL": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_an_operators_fsa_reaches_a_device_over_tls(server, sep2_schema) -> None:  # noqa: ANN001
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
    before = get(me.function_set_assignments_list_link.href + "?l=10", FunctionSetAssignmentsList)

    program = json.loads(cli(server, "der-program", "create", "--primacy", "3", "--description", "Feeder 7",
                             "--json"))["id"]
    made = json.loads(cli(server, "fsa", "create", "--device", str(edev_id), "--der-program", str(program),
                          "--description", "Feeder 7 FSA", "--json"))
    deadline = time.monotonic() + 5
    while True:  # the server notices the other process's write within 250 ms
        ed = get(me.href, EndDevice)
        listing = get(ed.function_set_assignments_list_link.href + "?l=10", FunctionSetAssignmentsList)
        if made["mrid"] in [f.mrid for f in listing.function_set_assignments] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    # the demo device is a member of no DER program: its empty FSA 1 gives way to the operator's
    assert [f.der_program_list_link.all for f in before.function_set_assignments] == [0]
    assert listing.all == 1 == ed.function_set_assignments_list_link.all
    (new,) = listing.function_set_assignments
    assert (new.href, new.mrid, new.description) == (f"/edev/{edev_id}/fsa/2", made["mrid"], "Feeder 7 FSA")
    assert get(new.href, FunctionSetAssignments) == new
    programs = get(new.der_program_list_link.href + "?l=10", DERProgramList)
    assert [p.description for p in programs.der_programs] == ["Feeder 7"]
    assert conn.sock.version() == "TLSv1.2"
    cli(server, "fsa", "delete", str(made["id"]))

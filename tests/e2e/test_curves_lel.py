"""DER curves and log events over a real `derflex serve` (TLS 1.2 CCM8, client certificates): an
operator (the CLI, another process) authors a volt-var curve and an event that links it; the
device follows the event's link to the curve, and posts a LogEvent the operator then reads."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from server.sep2 import codec
from server.sep2.curves import DERCurve, DERCurveList
from server.sep2.derp import DERControlList, DERProgram, DERProgramList
from server.sep2.fsa import FunctionSetAssignments, FunctionSetAssignmentsList
from server.sep2.log import LogEvent, LogEventList
from server.sep2.models import EndDevice, EndDeviceList
from tests.e2e.test_serve_tls import connect, request

pytestmark = pytest.mark.e2e


def cli(server, *args: str) -> str:  # noqa: ANN001
    done = subprocess.run([sys.executable, "-m", "server.cli", "--home", str(server.home), *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def get(conn, path: str, model: type, sep2_schema):  # noqa: ANN001, ANN201
    resp, body = request(conn, "GET", path)
    assert resp.status == 200, (path, resp.status, body)
    sep2_schema(body)
    return codec.parse(body, model)


def test_a_device_follows_its_event_to_a_curve_and_posts_a_log_event(server, sep2_schema) -> None:  # noqa: ANN001
    demo = server.pki.load("demo-1")
    conn = connect(server, demo)
    [me] = get(conn, "/edev?l=10", EndDeviceList, sep2_schema).end_devices
    device_id = int(me.href.rsplit("/", 1)[1])

    program = json.loads(cli(server, "der-program", "create", "--primacy", "3", "--description", "volt-var", "--json"))["id"]
    cli(server, "der-program", "members", "add", str(program), str(device_id))
    curve = json.loads(cli(server, "der-program", "curve", "add", str(program), "--type", "volt-var", "--y-ref",
                           "setMaxVar", "--point", "92:30", "--point", "108:-30", "--json"))["id"]
    cli(server, "event", "create", str(program), "--start", str(int(time.time()) + 600), "--duration", "900",
        "--control", json.dumps({"opModVoltVar": curve, "opModMaxLimW": 8000}))

    ed = get(conn, me.href, EndDevice, sep2_schema)
    fsas = get(conn, ed.function_set_assignments_list_link.href + "?l=10", FunctionSetAssignmentsList, sep2_schema)
    fsa = get(conn, fsas.function_set_assignments[0].href, FunctionSetAssignments, sep2_schema)
    programs = get(conn, fsa.der_program_list_link.href + "?l=10", DERProgramList, sep2_schema)
    [mine] = [p for p in programs.der_programs if p.description == "volt-var"]
    derp = get(conn, mine.href, DERProgram, sep2_schema)
    deadline = time.monotonic() + 3  # another process wrote it: the server follows within a moment
    while not (events := get(conn, derp.der_control_list_link.href + "?l=10", DERControlList, sep2_schema).der_controls):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    [event] = events
    link = event.der_control_base.op_mod_volt_var
    assert link == f"/edev/{device_id}/derp/{program}/dc/{curve}"
    found = get(conn, link, DERCurve, sep2_schema)
    assert (found.curve_type, [(p.xvalue, p.yvalue) for p in found.curve_data]) == (11, [(92, 30), (108, -30)])
    assert get(conn, derp.der_curve_list_link.href + "?l=10", DERCurveList, sep2_schema).all == 1

    posted = LogEvent(created_date_time=int(time.time()), details="volt-var engaged", function_set=11,
                      log_event_code=7, log_event_id=42, log_event_pen=40732, profile_id=2)
    resp, body = request(conn, "POST", ed.log_event_list_link.href, codec.render(posted))
    assert resp.status == 201, body
    location = resp.getheader("Location")
    back = get(conn, location, LogEvent, sep2_schema)
    assert (back.log_event_id, back.details, back.href) == (42, "volt-var engaged", location)
    assert get(conn, ed.log_event_list_link.href + "?l=10", LogEventList, sep2_schema).all == 1
    other = server.pki.load("demo-2")
    resp, _ = request(connect(server, other), "POST", ed.log_event_list_link.href, codec.render(posted))
    assert resp.status == 404  # not its EndDevice
    shown = cli(server, "admin", "log-events", str(device_id))
    assert f"device {device_id}: 1 log event(s)" in shown and '"volt-var engaged"' in shown



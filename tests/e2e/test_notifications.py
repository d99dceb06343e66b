"""2030.5 Subscription/Notification over real processes: `derflex serve` (TLS 1.2 CCM8, client
certificates), the CLI as the operator, and a real HTTPS receiver (tests/e2e/receiver.py) that
requires the server's certificate. What is checked is what arrives at the receiver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from server.sep2 import codec
from server.sep2.derp import DefaultDERControl, DERControlList
from server.sep2.models import EndDevice, EndDeviceList, Error
from server.sep2.sub import Condition, Subscription, SubscriptionList, parse_notification
from tests.e2e.conftest import RunningServer, start_server, stop_server
from tests.e2e.receiver import Receiver
from tests.e2e.test_serve_tls import connect, request

pytestmark = pytest.mark.e2e

ENV = {"DERFLEX_NOTIFICATION_ALLOW": "loopback", "DERFLEX_OUTBOX_RETRY_SECONDS": "1,1,1,1,1,1,1,1,1,1"}
MODELS = (DERControlList, DefaultDERControl, EndDevice, EndDeviceList)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("notify"), "--demo-devices", "2", env=ENV)
    yield running
    if running.proc.poll() is None:
        assert stop_server(running) == 0, running.log.read_text()


@pytest.fixture(scope="module")
def receiver(server: RunningServer) -> Iterator[Receiver]:
    pki = server.pki
    rx = Receiver(pki.server_cert_path, pki.server_key_path, pki.trust_path).start()
    yield rx
    rx.stop()


def cli(server: RunningServer, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "server.cli", "--home", str(server.home), *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def device(server: RunningServer, name: str):  # noqa: ANN201
    conn = connect(server, server.pki.load(name))
    resp, body = request(conn, "GET", "/edev?l=10")
    assert resp.status == 200
    [me] = codec.parse(body, EndDeviceList).end_devices
    return conn, me


def program_with(server: RunningServer, device_id: int, description: str) -> int:
    program = json.loads(cli(server, "der-program", "create", "--primacy", "2", "--description", description,
                             "--json"))["id"]
    cli(server, "der-program", "members", "add", str(program), str(device_id))
    return program


def subscribe(conn, me, resource: str, uri: str, *, limit: int = 10, condition: Condition | None = None):  # noqa: ANN001, ANN201
    doc = Subscription(subscribed_resource=resource, limit=limit, notification_uri=uri, condition=condition)
    return request(conn, "POST", me.subscription_list_link.href, codec.render(doc))


def notifications(rx: Receiver, path: str, n: int, sep2_schema, timeout: float = 25.0) -> list:  # noqa: ANN001
    out = []
    for body in rx.wait_for(n, path, timeout)[:n]:
        sep2_schema(body)
        out.append(parse_notification(body, MODELS))
    return out


def assert_latest_in_order(rx: Receiver, path: str, made: list[int], sep2_schema) -> None:  # noqa: ANN001
    """The default's changes `made` (each a new DefaultDERControl): what arrives is in the order they
    were made, each at most once, and ends with the last — changes handed over together are sent
    as one notification of the latest state, so an intermediate one may be skipped, never the
    last (none is lost: the resource as it stands always arrives)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = [r.der_control_base.op_mod_max_lim_w for _, r in notifications(rx, path, len(rx.bodies(path)), sep2_schema)]
        if got and got[-1] == made[-1]:
            break
        time.sleep(0.2)
    time.sleep(1.5)  # and nothing after it
    got = [r.der_control_base.op_mod_max_lim_w for _, r in notifications(rx, path, len(rx.bodies(path)), sep2_schema)]
    assert got and got[-1] == made[-1], got
    assert got == sorted(set(got), key=made.index), got  # in order, none twice


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every process under it (gunicorn workers, the BPP and its worker)."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for child in found:
        kill_tree(int(child))
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def statuses(note) -> list[tuple[str, int]]:  # noqa: ANN001
    _, resource = note
    return [(c.mrid, c.event_status.current_status) for c in resource.der_controls]


def test_subscription_lifecycle_and_scope(server, receiver, sep2_schema) -> None:  # noqa: ANN001
    conn, me = device(server, "demo-1")
    device_id = int(me.href.rsplit("/", 1)[1])
    assert me.subscription_list_link is not None and me.subscribable == 1
    program = program_with(server, device_id, "lifecycle")
    resource = f"/edev/{device_id}/derp/{program}/dderc"
    resp, body = subscribe(conn, me, resource, receiver.url("/life"))
    assert resp.status == 201, body
    location = resp.getheader("Location")
    resp, body = request(conn, "GET", location)
    sep2_schema(body)
    got = codec.parse(body, Subscription)
    assert (got.subscribed_resource, got.notification_uri, got.limit) == (resource, receiver.url("/life"), 10)
    resp, _ = subscribe(conn, me, resource, receiver.url("/life2"), limit=3)  # again: an update
    assert (resp.status, resp.getheader("Location")) == (200, location)
    resp, body = request(conn, "GET", me.subscription_list_link.href + "?l=10")
    sep2_schema(body)
    listed = codec.parse(body, SubscriptionList)
    assert listed.all == 1 and listed.subscriptions[0].notification_uri == receiver.url("/life2")

    other, other_me = device(server, "demo-2")  # another device: not its EndDevice, not its resource
    resp, body = subscribe(other, other_me, resource, receiver.url("/steal"))
    assert resp.status == 404, body
    resp, _ = request(other, "GET", location)
    assert resp.status == 404
    resp, _ = request(other, "DELETE", location)
    assert resp.status == 404

    resp, _ = request(conn, "DELETE", location)
    assert resp.status == 204
    resp, _ = request(conn, "GET", location)
    assert resp.status == 404


@pytest.mark.parametrize("uri, why", [
    ("http://127.0.0.1:9/n", "https"),
    ("https://10.1.2.3/n", "private"),
    ("https://user:pw@127.0.0.1/n", "user"),
    ("ftp://127.0.0.1/n", "https"),
    ("https://169.254.1.1/n", "link-local"),
    ("notification", "https"),
    ("https://no-such-host.invalid/n", "resolved"),
])
def test_hostile_notification_uris_are_refused(server, uri: str, why: str) -> None:  # noqa: ANN001
    conn, me = device(server, "demo-1")
    device_id = int(me.href.rsplit("/", 1)[1])
    resp, body = subscribe(conn, me, f"/edev/{device_id}", uri)
    assert resp.status == 400, body
    assert codec.parse(body, Error).reason_code == 1
    assert why in resp.getheader("X-Derflex-Error", "") or why in (resp.getheader("X-Error-Detail") or ""), \
        dict(resp.getheaders())
    resp, body = request(conn, "GET", me.subscription_list_link.href)
    assert codec.parse(body, SubscriptionList).all == 0


def test_a_condition_is_refused_with_reason_code_3(server, receiver) -> None:  # noqa: ANN001
    conn, me = device(server, "demo-1")
    device_id = int(me.href.rsplit("/", 1)[1])
    resp, body = subscribe(conn, me, f"/edev/{device_id}", receiver.url("/c"),
                           condition=Condition(attribute_identifier=0, lower_threshold=0, upper_threshold=5))
    assert resp.status == 400 and codec.parse(body, Error).reason_code == 3


def test_an_event_is_notified_created_active_gone_and_cancellations(server, receiver, sep2_schema) -> None:  # noqa: ANN001
    conn, me = device(server, "demo-1")
    device_id = int(me.href.rsplit("/", 1)[1])
    program = program_with(server, device_id, "events")
    derc = f"/edev/{device_id}/derp/{program}/derc"
    resp, body = subscribe(conn, me, derc, receiver.url("/events"))
    assert resp.status == 201, body

    start = int(time.time()) + 4
    cli(server, "event", "create", str(program), "--start", str(start), "--duration", "3",
        "--control", json.dumps({"opModMaxLimW": 5000}))
    created, active, gone = notifications(receiver, "/events", 3, sep2_schema, timeout=30)
    [(mrid, s0)] = statuses(created)
    assert s0 == 0 and statuses(active) == [(mrid, 1)] and statuses(gone) == []
    note, _ = created
    assert (note.status, note.subscribed_resource) == (0, derc)
    arrived = [r.at for r in receiver.received if r.path == "/events"]
    assert arrived[1] >= start and arrived[2] >= start + 3 + 5  # at its start; after it left the list

    later = int(time.time()) + 120
    out = cli(server, "event", "create", str(program), "--start", str(later), "--duration", "60",
              "--control", json.dumps({"opModMaxLimW": 4000}), "--json")
    [event] = json.loads(out)["events"]
    mrid = event["mrid"]
    cli(server, "event", "cancel", mrid)
    scheduled, cancelled = notifications(receiver, "/events", 5, sep2_schema)[3:5]
    assert statuses(scheduled) == [(mrid, 0)] and statuses(cancelled) == [(mrid, 2)]
    assert len(receiver.bodies("/events")) == 5  # nothing else, nothing twice


def test_a_receiver_that_was_down_gets_everything_afterwards(server, receiver, sep2_schema) -> None:  # noqa: ANN001
    conn, me = device(server, "demo-1")
    device_id = int(me.href.rsplit("/", 1)[1])
    program = program_with(server, device_id, "outage")
    resp, body = subscribe(conn, me, f"/edev/{device_id}/derp/{program}/dderc", receiver.url("/outage"))
    assert resp.status == 201, body
    receiver.failing = True
    for limit in (9000, 8000, 7000):
        cli(server, "der-program", "default-control", str(program), "--control", json.dumps({"opModMaxLimW": limit}))
    time.sleep(3)
    assert receiver.bodies("/outage") == []
    receiver.failing = False
    assert_latest_in_order(receiver, "/outage", [9000, 8000, 7000], sep2_schema)


def test_kill_9_with_notifications_pending_loses_none_and_doubles_none(server, receiver, sep2_schema) -> None:  # noqa: ANN001
    conn, me = device(server, "demo-1")
    device_id = int(me.href.rsplit("/", 1)[1])
    program = program_with(server, device_id, "crash")
    resp, body = subscribe(conn, me, f"/edev/{device_id}/derp/{program}/dderc", receiver.url("/crash"))
    assert resp.status == 201, body
    receiver.failing = True
    for limit in (6000, 5000, 4000, 3000):
        cli(server, "der-program", "default-control", str(program), "--control", json.dumps({"opModMaxLimW": limit}))
    time.sleep(2)
    kill_tree(server.proc.pid)
    server.proc.wait(10)
    receiver.failing = False
    restarted = start_server(server.home, env=ENV)
    server.proc, server.port = restarted.proc, restarted.port
    assert_latest_in_order(receiver, "/crash", [6000, 5000, 4000, 3000], sep2_schema)

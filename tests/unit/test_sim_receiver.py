"""The fleet's notification receiver (der_sim/notifications.py) over real TLS on a loopback port,
and a fleet's worker running an agent as soon as a notification arrives for it.

Covered: TLS 1.2 CCM8 with the dev PKI's server certificate; a Notification POSTed with the
server's certificate reaches the sink of the device its path names (parsed, answered 204); a
device's certificate (it chains to the same trust file) and a foreign CA's are refused at the
handshake; unknown paths 404, bodies that are no Notification 400, other media types 415, other
methods 405; the worker threads stay bounded with more connections than workers, and a waiting
connection is served once a busy one is told to close; a notified agent runs at once."""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from der_sim.agent import AgentConfig
from der_sim.fleet import Fleet, make_devices
from der_sim.notifications import NotificationReceiver
from server.sep2.derp import DERControlList
from server.sep2.models import MEDIA_TYPE, Time
from server.sep2.sub import Notification, render_notification
from server.tls import CCM8, client_context

LFDI = "0123456789ABCDEF0123456789ABCDEF01234567"


def note_body(resource: Any = None) -> bytes:
    note = Notification(subscribed_resource="/edev/1/derp/1/derc", subscription_uri="/edev/1/sub/1", status=0)
    return render_notification(note, DERControlList(href="/edev/1/derp/1/derc", all=0, results=0)
                               if resource is None else resource)


@pytest.fixture
def receiver(pki) -> Iterator[NotificationReceiver]:  # noqa: ANN001
    rx = NotificationReceiver(pki.server_cert_path, pki.server_key_path, pki.trust_path, threads=2, backlog=8,
                              idle_timeout=5).start()
    yield rx
    rx.stop()


def connect(rx: NotificationReceiver, cert: Any, key: Any, trust: Any) -> http.client.HTTPSConnection:
    conn = http.client.HTTPSConnection("127.0.0.1", rx.port, context=client_context(cert, key, trust), timeout=5)
    conn.connect()
    return conn


def as_server(rx: NotificationReceiver, pki: Any) -> http.client.HTTPSConnection:  # noqa: ANN401
    return connect(rx, pki.server_cert_path, pki.server_key_path, pki.trust_path)


def post(conn: http.client.HTTPSConnection, path: str, body: bytes, media: str = MEDIA_TYPE) -> tuple[int, bytes]:
    conn.request("POST", path, body=body, headers={"Content-Type": media})
    resp = conn.getresponse()
    return resp.status, resp.read()


def test_the_servers_notification_reaches_the_device_its_path_names(receiver, pki) -> None:  # noqa: ANN001
    got: list[tuple[Notification, Any]] = []
    receiver.register(LFDI.lower(), lambda n, r: got.append((n, r)))
    assert receiver.url_for(LFDI.lower()) == f"https://127.0.0.1:{receiver.port}/n/{LFDI}"
    conn = as_server(receiver, pki)
    assert isinstance(conn.sock, ssl.SSLSocket)
    assert (conn.sock.version(), conn.sock.cipher()[0]) == ("TLSv1.2", CCM8)
    assert post(conn, f"/n/{LFDI}", note_body()) == (204, b"")
    assert post(conn, f"/n/{LFDI}", note_body()) == (204, b"")  # the same keep-alive connection
    [(note, resource), _] = got
    assert note.subscribed_resource == "/edev/1/derp/1/derc" and isinstance(resource, DERControlList)

    status, _ = post(conn, f"/n/{'F' * 40}", note_body())
    assert status == 404  # nobody registered there
    assert post(conn, "/elsewhere", note_body())[0] == 404
    assert post(conn, f"/n/{LFDI}", b"<Notification/>")[0] == 400
    assert post(conn, f"/n/{LFDI}", note_body(Time(current_time=1, dst_end_time=0, dst_offset=0,
                                                    dst_start_time=0, local_time=1, quality=7, tz_offset=0)))[0] == 400
    assert post(conn, f"/n/{LFDI}", note_body(), media="text/xml")[0] == 415
    conn.request("GET", f"/n/{LFDI}")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 405 and resp.getheader("Allow") == "POST"
    assert len(got) == 2
    stats = receiver.stats()
    assert stats["received"] == 2 and stats["answered_404"] == 2 and stats["answered_400"] == 2
    assert stats["connections"] == 1
    conn.close()


def test_only_the_server_may_notify(receiver, pki, cast) -> None:  # noqa: ANN001
    got: list[Any] = []
    receiver.register(LFDI, lambda n, r: got.append(n))
    for cred in (cast["owner"], cast["aggregator"]):  # chain to the same trust file, but are not the server
        conn = connect(receiver, cred.cert_path, cred.key_path, pki.trust_path)
        with pytest.raises((ConnectionError, ssl.SSLError, http.client.RemoteDisconnected, OSError)):
            post(conn, f"/n/{LFDI}", note_body())
        conn.close()
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):  # a foreign CA: the handshake fails
        foreign = cast["foreign"]
        post(connect(receiver, foreign.cert_path, foreign.key_path, pki.trust_path), f"/n/{LFDI}", note_body())
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):  # no certificate at all
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(pki.trust_path)
        ctx.set_ciphers(CCM8)
        conn = http.client.HTTPSConnection("127.0.0.1", receiver.port, context=ctx, timeout=5)
        post(conn, f"/n/{LFDI}", note_body())
    assert got == [] and receiver.stats().get("connections_refused", 0) >= 3


def test_threads_stay_bounded_and_waiting_connections_are_served(receiver, pki) -> None:  # noqa: ANN001
    receiver.register(LFDI, lambda n, r: None)
    before = threading.active_count()
    answers: list[int] = []

    def one() -> None:  # as the server's notifier: a connection, a POST, kept open a while
        conn = as_server(receiver, pki)
        answers.append(post(conn, f"/n/{LFDI}", note_body())[0])
        time.sleep(0.5)
        conn.close()

    posters = [threading.Thread(target=one) for _ in range(6)]  # six connections, two workers
    for t in posters:
        t.start()
    for t in posters:
        t.join(15)
    assert answers == [204] * 6
    assert len([t for t in threading.enumerate() if t.name.startswith("der-sim-notify-")]) == 2 + 1  # + accept
    assert threading.active_count() <= before  # no thread per connection
    assert receiver.stats()["connections"] == 6

    idle = [as_server(receiver, pki) for _ in range(2)]  # both workers held by idle keep-alives …
    began = time.monotonic()
    late = as_server(receiver, pki)  # … let go as soon as another connection waits
    assert post(late, f"/n/{LFDI}", note_body()) == (204, b"")
    assert time.monotonic() - began < 2.0  # not the 5 s idle timeout
    for c in (*idle, late):
        c.close()


def test_a_notified_agent_runs_at_once(pki, cast, monkeypatch) -> None:  # noqa: ANN001
    rx = NotificationReceiver(pki.server_cert_path, pki.server_key_path, pki.trust_path, threads=1)
    devices = make_devices(2, seed=3, mix={"battery": 1.0}, prefix="wake")
    creds = [cast["owner"], cast["other"]]
    fleet = Fleet(devices, creds, "127.0.0.1", 9, pki.trust_path, config=AgentConfig(notify=True), workers=1,
                  receiver=rx)
    runs: list[tuple[str, float]] = []
    for agent in fleet.agents:
        monkeypatch.setattr(agent, "run_due", lambda now, a=agent: (runs.append((a.lfdi, now)), now + 3600)[1])
    with fleet:
        assert all(a.notification_uri == rx.url_for(a.lfdi) for a in fleet.agents)
        deadline = time.monotonic() + 5
        while len(runs) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(runs) == 2  # each ran once at the start, and would sleep an hour now
        target = fleet.agents[1]
        conn = as_server(rx, pki)
        sent = time.time()
        assert post(conn, f"/n/{target.lfdi}", note_body()) == (204, b"")
        deadline = time.monotonic() + 5
        while len(runs) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        conn.close()
        assert len(runs) == 3 and runs[2][0] == target.lfdi and runs[2][1] - sent < 1.0
        assert len(target._inbox) == 1  # queued for its run (run_due is the stand-in here)
    assert rx.stats()["received"] == 1
    assert rx._server is None  # the fleet stopped its receiver

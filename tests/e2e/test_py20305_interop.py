"""Interop with a real client: py20305 (third-party, Apache-2.0, on PyPI) against `derflex serve`.

One run of about 45 s, shared by the tests below: a real `derflex serve` process (fresh home, dev
PKI, TLS 1.2 / ECDHE-ECDSA-AES128-CCM8 only, client certificates) and the py20305 command-line
client as a subprocess, configured from tests/data/py20305/client.json and a device credential
from the dev PKI, driving its no-hardware `print_demo` connector. The client registers itself in
band; the test then plays the operator through derflex's own services on the server's database (a
program with the device as member and a DefaultDERControl, then a DERControl starting 15 s after
the client's next poll of the program and lasting 20 s), and lets the client run until the event
is over and it has mirrored readings twice. Everything is then checked from
the server's side: its database, its access log (`serve --access-log`), and its 2030.5 answers
read with the client's own certificate. What it took to make this work is in docs/interop.md.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

pytest.importorskip("py20305", reason="the py20305 client is not installed (pip install -e '.[test]')")

from server.db.session import Database  # noqa: E402
from server.pki import Credential  # noqa: E402
from server.sep2 import codec  # noqa: E402
from server.sep2.rsps import ResponseList  # noqa: E402
from server.services.sep2 import derp, devices
from server.tls import CCM8, client_context  # noqa: E402

from .conftest import RunningServer, start_server, stop_server  # noqa: E402

pytestmark = pytest.mark.e2e

CONFIG_TEMPLATE = Path(__file__).parents[1] / "data" / "py20305" / "client.json"
NS = "{urn:ieee:std:2030.5:ns}"

# py20305 never polls faster than every 10 s (py20305.client.poll_rate.MIN_POLL_RATE), so the
# server is asked for exactly that. The client polls a program's DERControlList on a fixed grid of
# that period; the event is published once the first such poll has been seen, starting 15 s after
# it (so the next poll finds it scheduled) and lasting 20 s, which puts both its start and its end
# midway between two polls. No poll may coincide with the end: derflex drops an event from the list
# at its end, and a client whose clock is a fraction of a second behind then takes the removal for
# a cancellation and answers 6 instead of 3 (docs/interop.md, finding 2).
POLL_SECONDS = 10
EVENT_LEAD_SECONDS = 15
EVENT_SECONDS = 20
FIXED_W = 5000  # opModFixedW: 50.00 % of the DER's maximum active power
DEFAULT_MAX_LIM_W = 8000  # DefaultDERControl opModMaxLimW: 80.00 %
READING_POSTS_WANTED = 2

# What the print_demo connector measures (py20305.connectors.print_demo.fetch_monitoring), by
# 2030.5 UomType: W (38), var (63), Hz (33), V (29), cos θ (65), VA (61), A (5).
DEMO_MEASUREMENTS = {38: 10000, 63: 0, 33: 60, 29: 240, 65: 0.98, 61: 10000, 5: 11.9}

# The client's requests the server may refuse without that being an interop fault: none so far.
TOLERATED_REFUSALS: set[tuple[str, str]] = set()

_ACCESS = re.compile(r'"(GET|HEAD|POST|PUT|DELETE) (\S+) HTTP/1\.[01]" (\d{3}) .*aiohttp')


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path and query, as sent
    status: int

    @property
    def template(self) -> str:
        """The path with its ids abstracted: /edev/3/fsa/1/derp?s=0 → /edev/{id}/fsa/{id}/derp."""
        return re.sub(r"/\d+(?=/|$)", "/{id}", self.target.split("?", 1)[0])


@dataclass
class Run:
    server: RunningServer
    cred: Credential
    home: Path
    device_id: int | None = None
    program_id: int | None = None
    event_mrid: str | None = None
    event_start: int = 0
    event_end: int = 0
    client_rc: int | None = None
    client_log: str = ""
    requests: tuple[Request, ...] = ()
    seconds: float = 0.0

    def client_requests(self, method: str, template: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.template == template]

    def diagnosis(self) -> str:
        tail = "\n".join(self.client_log.splitlines()[-40:])
        return f"client exit {self.client_rc}; last client log lines:\n{tail}"


def _requests_from_access_log(log: Path) -> tuple[Request, ...]:
    """The client's requests as the server logged them (aiohttp is py20305's HTTP stack)."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        m = _ACCESS.search(line)
        if m:
            found.append(Request(m.group(1), m.group(2), int(m.group(3))))
    return tuple(found)


def _client_config(run: Run) -> Path:
    """The template with this run's server URL and device LFDI; certificates copied beside it."""
    config = json.loads(CONFIG_TEMPLATE.read_text())
    config["server"]["url"] = f"https://localhost:{run.server.port}"
    config["devices"][0]["lfdi"] = run.cred.lfdi.lower()
    shutil.copyfile(run.cred.cert_path, run.home / config["tls"]["client_cert"])
    shutil.copyfile(run.cred.key_path, run.home / config["tls"]["client_key"])
    shutil.copyfile(run.server.pki.trust_path, run.home / config["tls"]["ca_cert"])
    path = run.home / "client.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def _wait(condition, timeout: float, client: subprocess.Popen) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if client.poll() is not None:
            return condition()
        time.sleep(0.1)
    return condition()


def _find_device(db: Database, lfdi: str) -> int | None:
    with db.transaction() as s:
        for device in devices.list_devices(s, 0, 100)["devices"]:
            if device["lfdi"] == lfdi:
                return device["id"]
    return None


def _publish_program(db: Database, run: Run) -> None:
    """The operator's part, first: a program with the device as member and a default control."""
    with db.transaction() as s:
        program = derp.create_der_program(s, description="py20305 interop", primacy=10, now=int(time.time()))
        s.flush()
        derp.add_members(s, program.id, [run.device_id])
        derp.set_default_control(s, program.id, {"opModMaxLimW": DEFAULT_MAX_LIM_W})
        run.program_id = program.id


def _publish_event(db: Database, run: Run, polled_at: float) -> None:
    """Then one event for every member: start and end midway between the client's polls."""
    start = round(polled_at) + EVENT_LEAD_SECONDS
    with db.transaction() as s:
        (event,) = derp.create_events(
            s,
            run.program_id,
            start=start,
            duration=EVENT_SECONDS,
            controls=[(None, derp.control_base({"opModFixedW": FIXED_W}))],
            now=int(time.time()),
            description="interop: fixed W",
        )
        run.event_mrid = event.mrid
        run.event_start, run.event_end = event.start, event.start + event.duration


def _response_statuses(db: Database, run: Run) -> list[int]:
    with db.read() as conn:
        rows = conn.execute(
            text(
                "SELECT r.status FROM der_responses r JOIN der_events e ON e.id = r.event_id "
                "WHERE e.mrid = :mrid AND r.device_id = :dev ORDER BY r.id"
            ),
            {"mrid": run.event_mrid, "dev": run.device_id},
        ).all()
    return [row.status for row in rows]


def _reading_posts(log: Path) -> int:
    return sum(
        1 for r in _requests_from_access_log(log) if r.method == "POST" and r.template == "/mup/{id}" and r.status < 300
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    began = time.monotonic()
    home = tmp_path_factory.mktemp("py20305")
    server = start_server(home, "--access-log", env={"DERFLEX_POLL_RATE": str(POLL_SECONDS)})
    db: Database | None = None
    client: subprocess.Popen | None = None
    try:
        result = Run(server=server, cred=server.pki.issue("py20305-client"), home=home)
        config = _client_config(result)
        db = Database(f"sqlite:///{home / 'var' / 'derflex.db'}")
        with (home / "client.log").open("wb") as out:
            client = subprocess.Popen(
                [sys.executable, "-m", "py20305", "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=home,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        # In-band registration (POST /edev) comes right after the first discovery.
        if _wait(lambda: _find_device(db, result.cred.lfdi) is not None, 20, client):
            result.device_id = _find_device(db, result.cred.lfdi)
            _publish_program(db, result)
            derc = f"/edev/{result.device_id}/derp/{result.program_id}/derc"

            def polled() -> bool:
                return any(r.target.split("?")[0] == derc for r in _requests_from_access_log(server.log))

            if _wait(polled, 2 * POLL_SECONDS + 5, client):
                _publish_event(db, result, polled_at=time.time())
            remaining = result.event_end - time.time() + 8

            def done() -> bool:
                responded = 3 in _response_statuses(db, result)
                mirrored = _reading_posts(server.log) >= READING_POSTS_WANTED
                return responded and mirrored

            _wait(done, remaining, client)
        if client.poll() is None:
            client.terminate()  # SIGTERM: py20305 stops in order
        try:
            result.client_rc = client.wait(timeout=20)
        except subprocess.TimeoutExpired:
            client.kill()
            result.client_rc = client.wait()
        result.client_log = (home / "client.log").read_text(errors="replace")
        result.requests = _requests_from_access_log(server.log)
        result.seconds = time.monotonic() - began
        _print_summary(result, db)
        yield result
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait()
        if db is not None:
            db.dispose()
        assert stop_server(server) == 0, server.log.read_text()


def _print_summary(run: Run, db: Database) -> None:
    counts = Counter(f"{r.method} {r.template} {r.status}" for r in run.requests)
    statuses = _response_statuses(db, run) if run.event_mrid else []
    print(f"\npy20305 interop run: {run.seconds:.1f} s, client exit {run.client_rc}")
    print(f"  {len(run.requests)} client requests:")
    for line, n in sorted(counts.items(), key=lambda kv: kv[0].split()[1]):
        print(f"    {n:3d} × {line}")
    print(f"  responses to {run.event_mrid}: {statuses}")
    print(f"  reading posts to /mup/{{id}}: {_reading_posts(run.server.log)}")


class Session:
    """The client's own view of the server: its certificate, one keep-alive connection."""

    def __init__(self, run: Run) -> None:
        ctx = client_context(run.cred.cert_path, run.cred.key_path, run.server.pki.trust_path)
        self.conn = http.client.HTTPSConnection("localhost", run.server.port, context=ctx, timeout=10)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Accept": "application/sep+xml"}
        if body is not None:
            headers["Content-Type"] = "application/sep+xml"
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def xml(self, path: str) -> ET.Element:
        status, body = self.request("GET", path)
        assert status == 200, f"GET {path} → {status}: {body[:300]!r}"
        return ET.fromstring(body)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def session(run: Run) -> Iterator[Session]:
    s = Session(run)
    yield s
    s.close()


# ------------------------------------------------------------------------------------ the tests


def test_tls_and_in_band_registration_with_the_certificate_identity(run: Run) -> None:
    from py20305.security import compute_lfdi, compute_sfdi

    assert run.device_id is not None, f"the client never registered. {run.diagnosis()}"
    # The server is CCM8-only (no --allow-gcm): every exchange below went over
    # TLS 1.2 / ECDHE-ECDSA-AES128-CCM8 with the client's certificate.
    assert "CCM8 only" in run.server.log.read_text()
    posts = run.client_requests("POST", "/edev")
    assert [p.status for p in posts] == [201], posts
    db = Database(f"sqlite:///{run.home / 'var' / 'derflex.db'}")
    try:
        with db.transaction() as s:
            device = devices.get_device(s, run.device_id)
    finally:
        db.dispose()
    pem = run.cred.cert_path.read_text()
    assert device["lfdi"] == run.cred.lfdi == compute_lfdi(pem).upper()
    assert device["sfdi"] == run.cred.sfdi == compute_sfdi(run.cred.lfdi.lower())
    assert device["registered_by"] == run.cred.lfdi  # in band, by the device itself
    assert f"registered EndDevice at /edev/{run.device_id}" in run.client_log


def test_client_walked_the_tree_and_the_server_refused_nothing(run: Run) -> None:
    gets = {r.template for r in run.requests if r.method == "GET" and r.status == 200}
    wanted = {
        "/dcap",
        "/tm",
        "/edev",
        "/edev/{id}/fsa",
        "/edev/{id}/fsa/{id}/derp",
        "/edev/{id}/derp/{id}/derc",
        "/edev/{id}/derp/{id}/dderc",
        "/edev/{id}/der",
    }
    assert wanted <= gets, f"never fetched: {sorted(wanted - gets)}. {run.diagnosis()}"
    # The DER documents a CSIP client reports, PUT to the hrefs the DERList gave it.
    puts = {r.template for r in run.requests if r.method == "PUT" and r.status == 204}
    assert {"/edev/{id}/der/{id}/dercap", "/edev/{id}/der/{id}/derg", "/edev/{id}/der/{id}/ders"} <= puts
    refused = [r for r in run.requests if r.status >= 400 and (r.method, r.template) not in TOLERATED_REFUSALS]
    assert not refused, f"the server refused the client: {refused}"
    assert run.client_rc == 0, run.diagnosis()
    # The client polled at the server's pollRate (10 s), not at its own 900 s default.
    assert len(run.client_requests("GET", "/edev/{id}/fsa/{id}/derp")) >= 3


def test_event_seen_scheduled_then_active_then_completed(run: Run, session: Session) -> None:
    assert run.event_mrid is not None, run.diagnosis()
    # The server's own 2030.5 answer: the event's replyTo ResponseList, read as the client.
    listing = codec.parse(session.request("GET", f"/rsps/{run.program_id}/rsp?s=0&l=50")[1], ResponseList)
    mine = sorted(
        (r for r in listing.responses if r.subject == run.event_mrid), key=lambda r: int(r.href.rsplit("/", 1)[1])
    )
    assert [r.status for r in mine] == [1, 2, 3], f"{listing}. {run.diagnosis()}"
    assert all(r.end_device_lfdi == run.cred.lfdi for r in mine)
    received, started, completed = (r.created_date_time for r in mine)
    # 1 (received) while the event was still scheduled; 2 (started) at its start; 3 at its end.
    assert received < run.event_start <= started < run.event_end <= completed + 1
    posts = run.client_requests("POST", "/rsps/{id}/rsp")
    assert [p.status for p in posts] == [201, 201, 201]
    # And the client applied what it was told (print_demo logs each control it would write):
    # the DefaultDERControl (80 % max), then the event's fixed 50 %, then released it.
    log = run.client_log
    assert "'p_lim_w': 80.0" in log
    assert "update_fixed_w({'WSetEna': 1, 'WSetMod': 0, 'WSet': 50.0})" in log
    assert "update_fixed_w({'WSetEna': 0})" in log


def test_mirrored_readings_are_served_back(run: Run, session: Session) -> None:
    # 201 for a new mirror, 204 when the client re-posts the same one (an upsert)
    posts = run.client_requests("POST", "/mup")
    assert posts and posts[0].status == 201 and all(r.status in (201, 204) for r in posts)
    posts = [r for r in run.client_requests("POST", "/mup/{id}") if r.status < 300]
    assert len(posts) >= READING_POSTS_WANTED, run.diagnosis()

    # Walk the usage points as the client: UsagePointList → UsagePoint → MeterReadingList →
    # MeterReading → ReadingType and its readings (ReadingLink, or ReadingSets and their Readings).
    points = session.xml("/upt?s=0&l=100").findall(f"{NS}UsagePoint")
    mine = [p for p in points if (p.findtext(f"{NS}deviceLFDI") or "").upper() == run.cred.lfdi]
    assert len(mine) == 1, ET.tostring(session.xml("/upt?s=0&l=100"))
    assert int(mine[0].findtext(f"{NS}roleFlags"), 16) == 0x49  # isMirror | isDER | isSubmeter
    mr_list = mine[0].find(f"{NS}MeterReadingListLink").get("href")
    meter_readings = session.xml(f"{mr_list}?s=0&l=100").findall(f"{NS}MeterReading")
    assert len(meter_readings) == len(DEMO_MEASUREMENTS)  # W, var, Hz, V, PF, VA, A

    physical: dict[int, list[float]] = {}
    for mr in meter_readings:
        rt = session.xml(mr.find(f"{NS}ReadingTypeLink").get("href"))
        uom = int(rt.findtext(f"{NS}uom"))
        power = int(rt.findtext(f"{NS}powerOfTenMultiplier") or 0)
        values: list[int] = []
        link = mr.find(f"{NS}ReadingLink")
        if link is not None:
            values.append(int(session.xml(link.get("href")).findtext(f"{NS}value")))
        sets = mr.find(f"{NS}ReadingSetListLink")
        if sets is not None:
            for rs in session.xml(f"{sets.get('href')}?s=0&l=100").findall(f"{NS}ReadingSet"):
                readings = session.xml(f"{rs.find(f'{NS}ReadingListLink').get('href')}?s=0&l=100")
                values += [int(r.findtext(f"{NS}value")) for r in readings.findall(f"{NS}Reading")]
        assert values, f"no readings served for MeterReading {mr.get('href')}"
        physical.setdefault(uom, []).extend(v * 10**power for v in values)
    served = sum(len(v) for v in physical.values())
    print(f"\n  served back at /upt: {len(meter_readings)} MeterReadings, {served} readings; by uom: {physical}")
    assert set(physical) == set(DEMO_MEASUREMENTS), physical
    for uom, expected in DEMO_MEASUREMENTS.items():
        assert len(physical[uom]) >= READING_POSTS_WANTED, (uom, physical)
        assert all(abs(v - expected) <= abs(expected) * 0.01 for v in physical[uom]), (uom, physical)


def test_a_2023_edition_document_is_accepted(run: Run) -> None:
    """py20305's default (2023) serialisation of the EndDevice it registers with, for a new device."""
    from py20305.models.sep.sep import EndDevice, Sfditype, TimeType
    from py20305.xml.serialization import to_xml

    cred = run.server.pki.issue("py20305-2023")
    now = TimeType(value=int(time.time()))
    body = to_xml(EndDevice(l_fdi=bytes.fromhex(cred.lfdi), s_fdi=Sfditype(value=cred.sfdi), changed_time=now))
    assert b'schemaVer="2.2"' in body
    ctx = client_context(cred.cert_path, cred.key_path, run.server.pki.trust_path, cipher=CCM8)
    conn = http.client.HTTPSConnection("localhost", run.server.port, context=ctx, timeout=10)
    try:
        conn.request("POST", "/edev", body=body, headers={"Content-Type": "application/sep+xml"})
        resp = conn.getresponse()
        answer = resp.read()
    finally:
        conn.close()
    assert resp.status == 201, (resp.status, answer)

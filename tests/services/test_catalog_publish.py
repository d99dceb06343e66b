"""Beckn v2 catalog/publish (server.services.bpp.catalog_publish) to a real HTTP catalog service.

A program authored, changed or cancelled records ProgramChanged; the outbox's `catalog` consumer
queues one catalog/publish of the whole catalog into beckn_outbox; the Beckn worker signs it and
POSTs it over HTTP (server.jobs.beckn.http_post, no stand-in) to `{DERFLEX_BECKN_CATALOG_URL}/catalog/publish`.
The catalog service here is a real HTTP server on 127.0.0.1 that checks our BECKN-006 signature
with our public key and validates every body against core `beckn.yaml` (`/catalog/publish`, LTS
tag) and the DEG packs ($BECKN_REFERENCE_DIR). A refused publish is retried, then its fact's
delivery is a dead letter, replayed by the operator; `published` (CLI, admin API) says what went
last and when.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from server.app import provider_of
from server.beckn import signing
from server.bootstrap import prepare
from server.cli import main as derflex
from server.config import Settings
from server.db import beckn as beckn_store
from server.db import outbox as outbox_store
from server.jobs.beckn import BecknWorker
from server.jobs.outbox import OutboxDrainer
from server.services import outbox
from server.services.bpp import catalog_publish, keys as beckn_keys
from server.services.errors import Conflict
from server.services.flex import programs as flex
from tests.api.test_beckn_v2 import DAILY, V2Schema, _reference

ACK = {"status": "ACK", "signature": "Signature keyId=\"cds.test|k1|ed25519\""}


class CatalogService:
    """A CDS on 127.0.0.1: every POST recorded as (path, parsed body, signature error or None,
    schema errors); answers as `behave(n)` says for the n-th ("ack", or an HTTP status)."""

    def __init__(self, schema: V2Schema, public_key: Callable[[], str]) -> None:
        self.schema, self.public_key = schema, public_key
        self.behave: Callable[[int], Any] = lambda n: "ack"
        self.now: Callable[[], float] = time.time  # the BPP's clock: signatures are checked at its time
        self.posts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        cds = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw)
                try:
                    signing.verify(self.headers.get("Authorization"), raw, now=datetime.fromtimestamp(cds.now(), UTC),
                                   key_lookup=lambda _s, _k: cds.public_key(), expected_subscriber=body["context"]["bppId"])
                    bad_signature = None
                except signing.SignatureError as exc:
                    bad_signature = str(exc)
                with cds.lock:
                    n = len(cds.posts)
                    cds.posts.append({"path": self.path, "body": body, "signature": bad_signature,
                                      "schema": cds.schema.errors("catalog/publish", body)})
                how = cds.behave(n)
                status, answer = (200, ACK) if how == "ack" else (int(how), {"error": "busy"})
                out = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *_a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cds"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def schema() -> V2Schema:
    pytest.importorskip("jsonschema")
    pytest.importorskip("yaml")
    return V2Schema(_reference())


@pytest.fixture
def cds(schema: V2Schema):  # noqa: ANN201
    holder: dict[str, str] = {}
    service = CatalogService(schema, lambda: holder["key"])
    service.holder = holder  # type: ignore[attr-defined]
    yield service
    service.stop()


@pytest.fixture
def settings(tmp_path, pki, database, cds) -> Settings:  # noqa: ANN001
    """The shared settings, with the catalog service configured."""
    s = Settings(home=tmp_path, database_url=database.url, pki_dir=pki.root, proxy_mode=True,
                 timezone="America/New_York", beckn_catalog_url=cds.url)
    prepare(s, say=lambda _: None).dispose()
    cds.holder["key"] = signing.public_key_b64(beckn_keys.signing_key(s).private_key)
    return s


@pytest.fixture
def bpp(settings, database, cds):  # noqa: ANN001, ANN201
    """The outbox's catalog consumer and the Beckn worker (real HTTP), on one clock."""
    clock = Clock(time.time())
    cds.now = clock
    publisher = catalog_publish.CatalogPublisher(provider_of(settings), catalog_url=settings.beckn_catalog_url,
                                                 retry_for_s=10.0)
    drainer = OutboxDrainer(database, [publisher], clock=clock)
    worker = BecknWorker(database, provider_of(settings), beckn_keys.signing_key(settings), clock=clock, senders=1)
    yield {"clock": clock, "drainer": drainer, "worker": worker, "db": database}
    worker.stop()


def publishes(database) -> list[beckn_store.BecknOutbox]:  # noqa: ANN001
    o = beckn_store.BecknOutbox
    with database.transaction() as s:
        return list(s.scalars(select(o).where(o.action == "catalog/publish").order_by(o.id)))


def send(bpp: dict[str, Any], cds: CatalogService, posts: int) -> None:
    """Run the worker until the catalog service has had `posts` POSTs and none is still being recorded."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        bpp["worker"].run_once()
        if len(cds.posts) >= posts and all(p.claimed_until == 0.0 for p in publishes(bpp["db"])):
            return
        time.sleep(0.05)
    raise AssertionError(f"{len(cds.posts)} of {posts} POSTs reached the catalog service")


def catalog_delivery(database) -> list[outbox_store.OutboxDelivery]:  # noqa: ANN001
    d = outbox_store.OutboxDelivery
    with database.transaction() as s:
        return list(s.scalars(select(d).where(d.consumer == outbox.CATALOG).order_by(d.id)))


def test_programs_authored_changed_and_cancelled_are_published_signed_and_valid(settings, database, bpp, cds) -> None:  # noqa: ANN001
    clock = bpp["clock"]
    with database.transaction() as s:
        first = flex.create_program(s, DAILY, int(clock.t))["id"]
    assert bpp["drainer"].drain() == 1
    [row] = publishes(database)
    [d] = catalog_delivery(database)
    assert d.state == "delivered" and row.message_id == catalog_publish.publish_message_id(d.idempotency_key)
    with database.transaction() as s:  # tied to its fact: a publish never taken makes it a dead letter
        assert s.get(outbox_store.OutboxReceipt, f"beckn:{row.message_id}").delivery_id == d.id
    send(bpp, cds, 1)
    [post] = cds.posts
    assert post["path"] == "/cds/catalog/publish" and post["signature"] is None and post["schema"] == []
    ctx = post["body"]["context"]
    assert (ctx["action"], ctx["version"], ctx["bppId"], ctx["messageId"]) == \
        ("catalog/publish", "2.0.0", settings.beckn_subscriber_id, row.message_id)
    assert "bapId" not in ctx and ctx["bppUri"].endswith("/beckn/v2")
    [catalog] = post["body"]["message"]["catalogs"]
    assert [r["id"] for r in catalog["resources"]] == [f"program-{first}"]
    need = catalog["resources"][0]["resourceAttributes"]
    assert need["@type"] == "DemandFlexNeed"
    assert {v for iv in need["intervals"] for p in iv["payloads"] for v in p["values"]} == {float(DAILY["requested_kw"])}
    assert publishes(database)[0].state == "delivered"

    # a change is published again, with what changed
    clock.t += 5
    with database.transaction() as s:
        flex.update_program(s, first, {"requested_kw": 7.5}, int(clock.t))
        flex.update_program(s, first, {"requested_kw": 7.5}, int(clock.t))  # the same again: no change, no fact
    assert bpp["drainer"].drain() == 1
    send(bpp, cds, 2)
    need = cds.posts[1]["body"]["message"]["catalogs"][0]["resources"][0]["resourceAttributes"]
    assert {v for iv in need["intervals"] for p in iv["payloads"] for v in p["values"]} == {7.5}

    # two changes handed over together: the older publish, still pending, is superseded (never sent)
    clock.t += 5
    with database.transaction() as s:
        second = flex.create_program(s, {**DAILY, "name": "Morning Peak"}, int(clock.t))["id"]
        flex.cancel_program(s, first, int(clock.t))
    assert bpp["drainer"].drain() == 2
    assert [p.state for p in publishes(database)] == ["delivered", "delivered", "superseded", "pending"]
    send(bpp, cds, 3)
    time.sleep(0.3)
    bpp["worker"].run_once()
    assert len(cds.posts) == 3 and all(p["signature"] is None and p["schema"] == [] for p in cds.posts)
    [catalog] = cds.posts[2]["body"]["message"]["catalogs"]
    assert [r["id"] for r in catalog["resources"]] == [f"program-{second}"]
    assert [o["id"] for o in catalog["offers"]] == [f"offer-program-{second}"]
    # what was last published, and when
    last = publishes(database)[-1]
    with database.transaction() as s:
        view = catalog_publish.published(s, settings.beckn_catalog_url)
    assert view["publish_url"] == f"{cds.url}/catalog/publish"
    assert view["last"] == view["last_delivered"]
    assert view["last"]["message_id"] == last.message_id and view["last"]["state"] == "delivered"
    assert view["last"]["resources"] == [f"program-{second}"] and view["last"]["attempts"] == 1
    assert view["last"]["queued"] == datetime.fromtimestamp(clock.t, UTC).isoformat().replace("+00:00", "Z")

    # every program cancelled: an empty catalog replaces what the service holds
    with database.transaction() as s:
        flex.cancel_program(s, second, int(clock.t))
    bpp["drainer"].drain()
    send(bpp, cds, 4)
    [catalog] = cds.posts[3]["body"]["message"]["catalogs"]
    assert "resources" not in catalog and catalog["offers"] == [] and cds.posts[3]["schema"] == []


def test_a_refused_publish_is_retried_then_a_dead_letter_and_its_replay_goes_through(settings, database, bpp,  # noqa: ANN001
                                                                                     cds) -> None:
    clock = bpp["clock"]
    cds.behave = lambda n: 503
    with database.transaction() as s:
        program = flex.create_program(s, DAILY, int(clock.t))["id"]
    bpp["drainer"].drain()
    for attempt in range(1, 20):  # backoff 1, 2, 4 … s until the 10 s deadline
        send(bpp, cds, attempt)
        [row] = publishes(database)
        if row.state != "pending":
            break
        clock.t = row.next_attempt_at
    assert row.state == "expired" and len(cds.posts) == row.attempts >= 3
    assert {p["body"]["context"]["messageId"] for p in cds.posts} == {row.message_id}  # the same bytes each time
    [d] = catalog_delivery(database)
    assert d.state == "dead" and d.last_error.startswith(
        f"catalog/publish to {cds.url}/catalog/publish not taken before its deadline: HTTP 503")
    with database.transaction() as s:
        view = catalog_publish.published(s, settings.beckn_catalog_url)
        assert view["last"]["state"] == "expired" and view["last_delivered"] is None
        outbox.replay(s, d.id, clock.t)
    cds.behave = lambda n: "ack"
    assert bpp["drainer"].drain() == 1
    send(bpp, cds, row.attempts + 1)
    replayed = publishes(database)[-1]
    assert replayed.message_id != row.message_id and replayed.state == "delivered"
    assert [r["id"] for r in cds.posts[-1]["body"]["message"]["catalogs"][0]["resources"]] == [f"program-{program}"]
    assert catalog_delivery(database)[0].state == "delivered"


def test_without_a_catalog_service_facts_are_taken_and_nothing_is_queued(settings, database) -> None:  # noqa: ANN001
    publisher = catalog_publish.CatalogPublisher(provider_of(settings), catalog_url="")
    with database.transaction() as s:
        flex.create_program(s, DAILY, int(time.time()))
    assert OutboxDrainer(database, [publisher]).drain() == 1
    assert publishes(database) == [] and [d.state for d in catalog_delivery(database)] == ["delivered"]
    with database.transaction() as s, pytest.raises(Conflict):
        catalog_publish.publish_now(s, provider_of(settings), "", time.time())
    with database.transaction() as s:
        assert catalog_publish.published(s, "") == {"catalog_url": None, "publish_url": None, "last": None,
                                                    "last_delivered": None}


def test_the_operator_sees_and_publishes_from_the_command_line_and_the_admin_api(settings, database, operator,  # noqa: ANN001
                                                                                 cds) -> None:
    with database.transaction() as s:
        program = flex.create_program(s, DAILY, int(time.time()))["id"]
    runner = CliRunner()
    args = ["--home", str(settings.home), "--database-url", database.url]
    env = {"DERFLEX_BECKN_CATALOG_URL": cds.url}
    shown = runner.invoke(derflex, [*args, "beckn", "catalog"], env=env)
    assert shown.exit_code == 0, shown.output
    assert f"catalog service: {cds.url}/catalog/publish" in shown.output and "last queued     (none)" in shown.output
    done = runner.invoke(derflex, [*args, "beckn", "catalog", "--publish", "--json"], env=env)
    assert done.exit_code == 0, done.output
    view = json.loads(done.output)
    assert view["last"]["state"] == "pending" and view["last"]["resources"] == [f"program-{program}"]
    assert view["last_delivered"] is None
    text = runner.invoke(derflex, [*args, "beckn", "catalog"], env=env).output
    assert f"pending    0 attempt(s)  message {view['last']['message_id']}  program-{program}" in text
    none = runner.invoke(derflex, [*args, "beckn", "catalog", "--publish"], env={"DERFLEX_BECKN_CATALOG_URL": ""})
    assert none.exit_code == 1 and "no catalog service is configured" in none.output

    got = operator("GET", "/beckn/catalog").get_json()
    assert got["last"]["message_id"] == view["last"]["message_id"] and got["catalog_url"] == cds.url
    posted = operator("POST", "/beckn/catalog/publish")
    assert posted.status_code == 202 and posted.get_json()["resources"] == [f"program-{program}"]
    assert [p.state for p in publishes(database)] == ["superseded", "pending"]
    assert operator("GET", "/beckn/catalog").get_json()["last"]["message_id"] == posted.get_json()["message_id"]

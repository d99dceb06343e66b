"""Beckn v2.0.0 LTS beside v1.1.0: the v2 wire package, the `/beckn/v2/{action}` path of the real
Flask app of `create_beckn_app`, and the worker that answers into signed callbacks.

Every request is signed (BECKN-006, unchanged) by a BAP whose key is in the file registry; the
worker's `send` is a recorder standing in for the network. Every message we emit — the Acks and
NACKs, every callback — is validated against core `beckn.yaml` (LTS tag) and the DEG packs it
names, read from $BECKN_REFERENCE_DIR/v2 (never copied into the project). The devkit examples are
read from the same folder: every request is accepted (ACK) and answered; with our ids substituted
the uc2 flow runs from select to a cleared bid.
"""

from __future__ import annotations

import copy
import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from der_sim.bap import BapIdentity
from server.app import create_beckn_app, provider_of
from server.beckn import signing
from server.beckn.codec import render_json
from server.beckn_v2 import context as v2context, envelope, packs
from server.beckn_v2.errors import V2Error
from server.bootstrap import prepare
from server.db import beckn as store
from server.db import flex as flex_store
from server.jobs.beckn import BecknWorker
from server.services.bpp import keys as beckn_keys
from server.services.bpp.v2contracts import block_curve
from server.services.flex import programs as flex
from tests.builders import lfdi, rated_battery

BAP_ID = "bap.v2.test"
BAP_URI = "http://bap.v2.test/beckn"
DAILY = {
    "name": "Evening Peak", "currency": "INR", "description": "evening peak flex",
    "window": {"weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "16:00", "end": "18:00",
               "tz": "UTC"},
    "requested_kw": 6.0, "interval_s": 3600, "price_cap": 5.0, "incentive": {"kind": "pay_as_clear"},
    "eligible_kinds": ["battery", "ev_charger"], "lead_time_s": 3600,
}


# ------------------------------------------------------------------------------- the schemas


def _reference() -> Path:
    folder = os.environ.get("BECKN_REFERENCE_DIR")
    if not folder or not (Path(folder) / "v2" / "core" / "beckn.yaml").is_file():
        pytest.skip("BECKN_REFERENCE_DIR (with v2/core/beckn.yaml) is not set: v2 messages cannot be validated")
    return Path(folder) / "v2"


class V2Schema:
    """core/beckn.yaml (LTS) and the DEG packs, with jsonschema (draft 2020-12)."""

    def __init__(self, root: Path):
        import yaml
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012

        self.root = root
        self.core = yaml.safe_load((root / "core" / "beckn.yaml").read_text())
        self.packs: dict[str, tuple[dict[str, Any], str]] = {}
        resources = []
        for f in (root / "deg-schemas").glob("*/*/attributes.yaml"):
            doc = yaml.safe_load(f.read_text())
            uri = f"{packs.SCHEMA_BASE}/{f.parent.parent.name}/{f.parent.name}"
            resources.append((uri, Resource(contents=doc, specification=DRAFT202012)))
            for name in doc["components"]["schemas"]:
                self.packs.setdefault(name, (doc, uri))
        # packs the DEG packs refer to but nobody publishes (Location, Quantity…): anything goes there
        class AnyName(dict):  # every /components/schemas/<name> is {} (accepts anything)
            def __missing__(self, key: str) -> dict[str, Any]:
                return {}

        unpublished = lambda uri: Resource(contents={"components": {"schemas": AnyName()}}, specification=DRAFT202012)  # noqa: E731
        self.registry = Registry(retrieve=unpublished).with_resources(resources)

    def _validator(self, schema: dict[str, Any], base: dict[str, Any], uri: str = "urn:core") -> Any:
        import jsonschema
        root = {"components": base["components"], "$id": uri, **schema}
        return jsonschema.Draft202012Validator(root, registry=self.registry, format_checker=jsonschema.FormatChecker())

    def errors(self, path: str, body: dict[str, Any]) -> list[str]:
        """Errors of `body` posted to core `/{path}`, and of every pack inside it."""
        schema = self.core["paths"][f"/{path}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        found = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in self._validator(schema, self.core).iter_errors(body)]
        return found + self.pack_errors(body)

    def pack_errors(self, body: Any) -> list[str]:
        names = {"TimeSeries": "BecknTimeSeries"}
        out, stack = [], [body]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                kind = node.get("@type")
                if "@context" in node and kind in packs.CONTEXTS and kind != "SettlementTerm":
                    doc, uri = self.packs[names.get(kind, kind)]
                    schema = doc["components"]["schemas"][names.get(kind, kind)]
                    props = schema.get("properties", {})
                    inner = {k: v for k, v in node.items() if k in props or not k.startswith("@")}
                    v = self._validator({"$ref": f"#/components/schemas/{names.get(kind, kind)}"}, doc, uri)
                    out += [f"{kind} {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(inner)
                            if not self._unpublished_choice(e)]
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
        return out

    def _unpublished_choice(self, e: Any) -> bool:
        """A oneOf between packs nobody publishes (OpenADR descriptors): it cannot be judged here."""
        shipped = [uri for _, uri in self.packs.values()]
        return e.validator == "oneOf" and all(
            isinstance(s, dict) and "$ref" in s and not any(s["$ref"].startswith(u) for u in shipped)
            for s in e.validator_value)

    def ack_errors(self, status: int, body: dict[str, Any]) -> list[str]:
        name = {200: "Ack", 409: "AckNoCallback", 400: "NackBadRequest", 401: "NackUnauthorized", 404: "NackBadRequest"}[status]
        v = self._validator({"$ref": f"#/components/schemas/{name}"}, self.core)
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(body)]


@pytest.fixture(scope="module")
def schema() -> V2Schema:
    pytest.importorskip("jsonschema")
    pytest.importorskip("yaml")
    return V2Schema(_reference())


def example(name: str) -> dict[str, Any]:
    return json.loads((_reference() / "examples" / name).read_text())


# ------------------------------------------------------------------------------------ the wire


def test_context_accepts_both_lts_shapes_and_refuses_by_rule() -> None:
    now = datetime(2026, 6, 14, 9, 5, 1, tzinfo=UTC)
    doc = example("uc2-bid-curve-pac/select-request.json")["context"]
    ctx = v2context.parse_context(doc, action="select", bpp_id="bpp.example.com", now=now)
    assert ctx.shape == "lts" and ctx.network_id == "nfh.global/testnet-deg" and ctx.ttl is None
    release = {**doc, "try": False, "senderId": doc["bapId"], "receiverId": "bpp.example.com"}
    assert v2context.parse_context(release, action="select", bpp_id="bpp.example.com", now=now).shape == "release"
    lts = {**doc, "domain": "beckn.one:deg:demand-flex:2.0.0", "location": {"country": {"code": "IND"}}}
    assert v2context.parse_context(lts, action="select", bpp_id="bpp.example.com", now=now).domain
    cases = [
        ({**doc, "version": "1.1.0"}, "context.version", "50006"),
        ({**doc, "bppId": "someone.else"}, "context.bppId", "60005"),
        ({**doc, "receiverId": "someone.else"}, "context.receiverId", "60005"),
        ({**doc, "timestamp": "2026-06-14T08:00:00Z"}, "context.timestamp", "60005"),  # older than the default ttl
        ({**doc, "bapUri": "https://bap.example.com/a/../b"}, "context.bapUri", "30000"),
        ({**doc, "networkId": "no network"}, "context.networkId", "30000"),
        ({**doc, "try": "yes"}, "context.try", "30000"),
    ]
    for bad, path, code in cases:
        with pytest.raises(V2Error) as err:
            v2context.parse_context(bad, action="select", bpp_id="bpp.example.com", now=now)
        assert (err.value.path, err.value.code) == (path, code), bad
    with pytest.raises(V2Error) as err:
        v2context.parse_context(doc, action="select", bpp_id="bpp.example.com", now=now, networks=("other/net",))
    assert err.value.path == "context.networkId"


def test_unknown_packs_are_refused_with_40007() -> None:
    message = example("uc2-bid-curve-pac/confirm-request.json")["message"]
    packs.check_message(message)  # every pack of the devkit is served
    for mutate, where in [
        (lambda m: m["contract"]["commitments"][0]["resources"][0]["resourceAttributes"].__setitem__("@type", "EvCharging"),
         "resourceAttributes.@type"),
        (lambda m: m["contract"]["contractAttributes"].__setitem__("@context", "https://evil.example/ctx.jsonld"),
         "contractAttributes.@context"),
        (lambda m: m["contract"].__setitem__("participants", [{"id": "x", "participantAttributes": {"@context": "https://a.b/c", "@type": "Person"}}]),
         "participantAttributes.@type"),
    ]:
        bad = copy.deepcopy(message)
        mutate(bad)
        with pytest.raises(V2Error) as err:
            packs.check_message(bad)
        assert err.value.code == "40007" and err.value.path.endswith(where)


def test_ack_counter_signature_verifies_and_catches_tampering(schema: V2Schema) -> None:
    key = BapIdentity.generate("bpp.sig.test", "http://x/beckn").signing_key
    now = datetime.now(UTC)
    request = b'{"context":{"messageId":"m-1"}}'
    ack = envelope.ack_body("ACK", request, "m-1", key, now=now)
    assert schema.ack_errors(200, ack) == []
    public = signing.public_key_b64(key.private_key)
    envelope.verify_counter_signature(ack, request, "m-1", public, now=now, expected_signer="bpp.sig.test")
    for req, mid, body in [(request + b" ", "m-1", ack), (request, "m-2", ack), (request, "m-1", {**ack, "status": "NACK"})]:
        with pytest.raises(envelope.CounterSignatureError):
            envelope.verify_counter_signature(body, req, mid, public, now=now)
    nack = envelope.nack_body(V2Error("is missing", "context.bapId"), request, "m-1", key, now=now)
    assert nack["error"] == {"errorCode": "30000", "errorMessage": "context.bapId: is missing"}
    assert schema.ack_errors(400, nack) == []


def test_block_bids_make_a_non_decreasing_step_curve() -> None:
    assert block_curve([2.5, 1.5, 2.5], [10, 5, 0]) == [(1.5, 0.0), (1.5, 5.0), (2.5, 5.0), (2.5, 15.0)]


# ------------------------------------------------------------------------------- through HTTP


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []

    def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        self.calls.append((url, body, headers))
        return 200, json.dumps({"status": "ACK", "signature": "x"}).encode()

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(b) for _, b, _ in self.calls]


@pytest.fixture
def world(settings, database):  # noqa: ANN001, ANN201
    prepare(settings, say=lambda _: None).dispose()
    key = beckn_keys.signing_key(settings)
    bap = BapIdentity.generate(BAP_ID, BAP_URI)
    beckn_keys.add_to_file_registry(settings, bap.subscriber())
    now = int(time.time())
    with database.transaction() as s:
        devices = [lfdi(f"v2-battery-{i}") for i in range(3)]
        for d in devices:
            rated_battery(s, d, now - 60)
        program = flex.create_program(s, DAILY, now - 60)
    client = create_beckn_app(settings, database).test_client()
    recorder = Recorder()
    worker = BecknWorker(database, provider_of(settings), key, send=recorder, senders=1)
    yield {"client": client, "bap": bap, "key": key, "program": program["id"], "devices": devices,
           "recorder": recorder, "worker": worker, "settings": settings, "db": database}
    worker.stop()


def post(world: dict[str, Any], action: str, doc: dict[str, Any], *, sign: bool = True, raw: bytes | None = None,
         signer: BapIdentity | None = None, ttl_s: int = 30) -> tuple[int, dict[str, Any], bytes]:
    body = raw if raw is not None else render_json(doc)
    headers = {"Content-Type": "application/json"}
    if sign:
        headers["Authorization"] = signing.authorization_header(body, (signer or world["bap"]).signing_key,
                                                                now=datetime.now(UTC), ttl_s=ttl_s)
    r = world["client"].post(f"/beckn/v2/{action}", data=body, headers=headers)
    return r.status_code, r.get_json(), body


def ours(world: dict[str, Any], doc: dict[str, Any], action: str) -> dict[str, Any]:
    """A devkit message re-addressed to this BPP now (ids and meters kept unless replaced later)."""
    doc = copy.deepcopy(doc)
    s = world["settings"]
    doc["context"] |= {"action": action, "bapId": BAP_ID, "bapUri": BAP_URI, "bppId": s.beckn_subscriber_id,
                       "bppUri": s.beckn_uri + "/v2", "messageId": str(uuid.uuid4()),
                       "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
    return doc


def process(world: dict[str, Any]) -> list[dict[str, Any]]:
    before = len(world["recorder"].calls)
    world["worker"].run_once()
    world["worker"]._pool.shutdown(wait=True)
    from concurrent.futures import ThreadPoolExecutor
    world["worker"]._pool = ThreadPoolExecutor(1)
    return world["recorder"].bodies()[before:]


def stored(world: dict[str, Any]) -> int:
    with world["db"].transaction() as s:
        return s.scalar(select(func.count()).select_from(store.BecknInbox))


def check_ack(world: dict[str, Any], schema: V2Schema, status: int, ack: dict[str, Any], body: bytes) -> None:
    assert schema.ack_errors(status, ack) == [], ack
    public = signing.public_key_b64(world["key"].private_key)
    try:  # the message id the BPP could read (none from a body it could not parse)
        ctx = json.loads(body).get("context")
        mid = ctx.get("messageId", "") if isinstance(ctx, dict) else ""
    except (ValueError, RecursionError):
        mid = ""
    if ack["status"] == "NACK" and ack["error"]["errorMessage"].startswith(("JSON nested", "body is")):
        mid = ""  # refused before its context was read
    envelope.verify_counter_signature(ack, body, mid if isinstance(mid, str) else "", public, now=datetime.now(UTC),
                                      expected_signer=world["settings"].beckn_subscriber_id)


DEVKIT_REQUESTS = [
    ("uc2-bid-curve-pac/select-request.json", "select"), ("uc2-bid-curve-pac/init-request.json", "init"),
    ("uc2-bid-curve-pac/confirm-request.json", "confirm"), ("uc2-bid-curve-pac/discover-request.json", "discover"),
    ("uc1-bdr-w-baselining/select-request.json", "select"), ("uc1-bdr-w-baselining/init-request.json", "init"),
    ("uc1-bdr-w-baselining/confirm-request.json", "confirm"), ("uc1-bdr-w-baselining/discover-request.json", "discover"),
    ("uc1-bdr-w-baselining/update-request-opt-in.json", "update"), ("other-deg-flows/data-exchange-status-request.json", "status"),
]


def test_every_devkit_request_is_acked_and_answered_with_valid_callbacks(world, schema) -> None:  # noqa: ANN001
    before = stored(world)
    refused = []
    for name, action in DEVKIT_REQUESTS:
        doc = ours(world, example(name), action)
        if doc["message"].get("contract", {}).get("id", "").startswith("contract-"):
            refused.append(name)
        status, ack, body = post(world, action, doc)
        check_ack(world, schema, status, ack, body)
        if status == 400:  # refused with the schema's reason: core Contract.id is a uuid
            assert ack["error"]["errorMessage"].startswith("message.contract.id:") and "uuid" in ack["error"]["errorMessage"]
            assert stored(world) == before and process(world) == []
            continue
        assert status == 200 and ack["status"] == "ACK", (name, ack)
        before += 1
        callbacks = process(world)
        assert len(callbacks) == 1, name
        cb = callbacks[0]
        assert cb["context"]["action"] == f"on_{action}" and cb["context"]["messageId"] == doc["context"]["messageId"]
        assert cb["context"]["requestDigest"]["digest"] == f"BLAKE-512={signing.digest_b64(body)}"
        assert schema.errors(f"on_{action}", cb) == [], (name, cb)
        if action != "discover":  # the devkit's ids are not ours: refused with the reason, nothing stored
            assert cb["error"]["errorCode"] in ("30004", "30006", "30008", "40000"), (name, cb["error"])
        else:
            assert cb["message"]["catalogs"][0]["resources"][0]["id"] == f"program-{world['program']}"


def our_contract(world: dict[str, Any], name: str, action: str, contract_id: str | None = None,
                 meters: list[str] | None = None, bid: list[tuple[list[float], list[float]]] | None = None) -> dict[str, Any]:
    doc = ours(world, example(name), action)
    c = doc["message"]["contract"]
    c.pop("consideration", None)
    if contract_id:
        c["id"] = contract_id
    cm = c["commitments"][0]
    cm["resources"][0]["id"] = f"program-{world['program']}"
    cm["resources"][0]["quantity"]["unitQuantity"] = 6
    cm["offer"]["id"] = f"offer-program-{world['program']}"
    cm["offer"]["resourceIds"] = [f"program-{world['program']}"]
    for entry in cm["offer"]["offerAttributes"]["inputs"]:
        if entry["role"] == "seller" and meters is not None:
            entry["inputs"] = {"participatingMeters": meters}
    if bid is not None:
        cm["commitmentAttributes"]["intervals"] = [
            {"id": i, "payloads": [{"type": "OFFER_PRICE", "values": p}, {"type": "CAPACITY_OFFERED", "values": q}]}
            for i, (p, q) in enumerate(bid)]
    return doc


def brute_force(bid: list[tuple[list[float], list[float]]], requested: float) -> list[tuple[float, float]]:
    out = []
    for prices, caps in bid:
        for p in sorted(set(prices)):
            total = sum(c for q, c in zip(prices, caps) if q <= p)
            if total >= requested:
                out.append((requested, p))
                break
        else:
            out.append((sum(caps), max(prices)))
    return out


def test_uc2_flow_select_init_confirm_clears_the_bid_then_status_and_cancel(world, schema) -> None:  # noqa: ANN001
    meters = [f"did:web:meters.example:{d}" for d in world["devices"][:2]]
    bid = [([1.5, 2.5, 3.5, 5.0], [2, 2, 3, 1]), ([1.5, 2.5, 3.5, 5.0], [1, 1, 1, 1])]
    answers = {}
    for name, action in (("select-request.json", "select"), ("init-request.json", "init")):
        status, ack, _ = post(world, action, our_contract(world, f"uc2-bid-curve-pac/{name}", action, meters=meters))
        assert status == 200
        [cb] = process(world)
        assert "error" not in cb, cb["error"]
        assert schema.errors(f"on_{action}", cb) == []
        assert cb["message"]["contract"]["status"]["code"] == "DRAFT"
        answers[action] = cb
    cid = answers["init"]["message"]["contract"]["id"]
    uuid.UUID(cid)
    status, ack, _ = post(world, "confirm", our_contract(world, "uc2-bid-curve-pac/confirm-request.json", "confirm",
                                                         cid, meters=meters, bid=bid))
    [cb] = process(world)
    assert "error" not in cb, cb.get("error")
    assert schema.errors("on_confirm", cb) == []
    contract = cb["message"]["contract"]
    assert contract["status"]["code"] == "ACTIVE" and contract["id"] == cid
    series = packs.read_series(contract["commitments"][0]["commitmentAttributes"], "ts")
    cleared = [(iv["CAPACITY_CLEARED"][0], iv["CLEARING_PRICE"][0]) for iv in series.intervals]
    assert cleared == brute_force(bid, 6.0) == [(6.0, 3.5), (4.0, 5.0)]
    with world["db"].transaction() as s:
        enrolled = s.scalars(select(flex_store.Enrollment.state).where(flex_store.Enrollment.external_ref == cid)).all()
    assert sorted(enrolled) == ["active", "active"]
    # a repeat of the same message is ACKed again and answered once
    # status and a v1 lookup of the v2 id
    doc = ours(world, example("other-deg-flows/data-exchange-status-request.json"), "status")
    doc["message"]["contract"]["id"] = cid
    assert post(world, "status", doc)[0] == 200
    [cb] = process(world)
    assert cb["message"]["contract"]["status"]["code"] == "ACTIVE" and schema.errors("on_status", cb) == []
    cancel = {"context": {**doc["context"], "action": "cancel", "messageId": str(uuid.uuid4()), "try": True},
              "message": {"contract": {"id": cid, "commitments": contract["commitments"]}}}
    assert post(world, "cancel", cancel)[0] == 200
    [cb] = process(world)  # a preview: answered CANCELLED, nothing kept
    assert cb["message"]["contract"]["status"]["code"] == "CANCELLED"
    cancel["context"] = {**cancel["context"], "messageId": str(uuid.uuid4())}
    del cancel["context"]["try"]
    with world["db"].transaction() as s:
        assert s.get(store.BecknOrder, cid).state == "active"
    assert post(world, "cancel", cancel)[0] == 200
    [cb] = process(world)
    assert cb["message"]["contract"]["status"]["code"] == "CANCELLED" and schema.errors("on_cancel", cb) == []
    with world["db"].transaction() as s:
        assert s.get(store.BecknOrder, cid).state == "cancelled"


def test_hostile_v2_input_is_nacked_and_nothing_is_stored(world, schema) -> None:  # noqa: ANN001
    good = ours(world, example("uc2-bid-curve-pac/select-request.json"), "select")
    stranger = BapIdentity.generate(BAP_ID, BAP_URI)  # same id, key nobody registered
    old = copy.deepcopy(good)
    old["context"]["timestamp"] = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    unknown = copy.deepcopy(good)
    unknown["message"]["contract"]["contractAttributes"]["@type"] = "P2PTrade"
    deep: Any = {}
    for _ in range(200):
        deep = {"a": deep}
    cases = [
        (dict(doc=good, sign=False), 401, None),
        (dict(doc=good, signer=stranger), 401, None),
        (dict(doc=good, ttl_s=100_000), 401, None),
        (dict(doc=old), 400, "60005"),
        (dict(doc=unknown), 400, "40007"),
        (dict(doc={**good, "context": {**good["context"], "version": "1.1.0"}}), 400, "50006"),
        (dict(doc=good, raw=b'{"context": ' + b"[" * 5000 + b"]" * 5000 + b"}"), 400, "30000"),
        (dict(doc=good, raw=render_json({**good, "pad": "x" * 300_000})), 400, "30000"),
        (dict(doc=good, raw=render_json({**good, "message": deep})), 400, "30000"),
    ]
    for kwargs, want, code in cases:
        status, ack, body = post(world, "select", **kwargs)
        assert status in (want, 413), (kwargs.get("doc", {}).get("context", {}).get("version"), status, ack)
        if status != 413:
            assert ack["status"] == "NACK" and schema.ack_errors(status, ack) == []
            check_ack(world, schema, status, ack, body)
            if code:
                assert ack["error"]["errorCode"] == code, ack
    assert stored(world) == 0
    assert process(world) == []

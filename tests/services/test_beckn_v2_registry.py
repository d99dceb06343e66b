"""DeDi as the registry kind (DERFLEX_BECKN_REGISTRY_KIND=dedi): the BPP asks a real HTTP DeDi
directory `GET /dedi/lookup?subscriberId&keyId` for a BAP's key, and a v2 request signed with that
key is taken; an unknown key (404), a record for another key, or one without the BAP's type is
nobody's key."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from der_sim.bap import BapIdentity
from server.beckn import signing
from server.beckn.registry import RegistryError
from server.beckn_v2.registry import parse_record
from server.services.bpp.keys import KeyRegistry

BAP = BapIdentity.generate("bap.dedi.example", "https://bap.dedi.example/beckn")


class Directory(BaseHTTPRequestHandler):
    records: dict[tuple[str, str], dict] = {}
    asked: list[str] = []

    def log_message(self, *args):  # noqa: ANN002, ANN201
        pass

    def do_GET(self):  # noqa: ANN201, N802
        url = urlsplit(self.path)
        self.asked.append(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        record = self.records.get((q.get("subscriberId", ""), q.get("keyId", "")))
        body = json.dumps({"data": record} if record else {"error": "not found"}).encode()
        self.send_response(200 if url.path == "/dedi/lookup" and record else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def directory():  # noqa: ANN201
    server = ThreadingHTTPServer(("127.0.0.1", 0), Directory)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Directory.asked = []
    Directory.records = {(BAP.subscriber_id, "k1"): {
        "subscriberId": BAP.subscriber_id, "keyId": "k1", "type": "BAP", "url": BAP.bap_uri,
        "signingPublicKey": signing.public_key_b64(BAP.private_key),
        "validFrom": "2020-01-01T00:00:00Z", "validUntil": "2099-01-01T00:00:00Z"}}
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_dedi_directory_gives_the_bap_its_key(settings, directory) -> None:  # noqa: ANN001
    keys = KeyRegistry(settings.with_(beckn_registry_url=directory, beckn_registry_kind="dedi"))
    entry = keys.lookup(BAP.subscriber_id, "k1")
    assert entry is not None and entry.type == "BAP" and entry.url == BAP.bap_uri
    assert Directory.asked == [f"/dedi/lookup?subscriberId={BAP.subscriber_id}&keyId=k1"]
    body = b'{"context":{},"message":{}}'
    header = signing.authorization_header(body, BAP.signing_key, now=signing_now(), ttl_s=30)
    assert signing.verify(header, body, now=signing_now(), key_lookup=keys, expected_subscriber=BAP.subscriber_id)
    assert keys.lookup(BAP.subscriber_id, "k2") is None  # 404: nobody's key
    keys.lookup(BAP.subscriber_id, "k1")
    assert len(Directory.asked) == 2  # the known key came from the cache


def signing_now():  # noqa: ANN201
    from datetime import UTC, datetime

    return datetime.now(UTC)


@pytest.mark.parametrize("change, field", [
    ({"keyId": "k9"}, "keyId"), ({"subscriberId": "someone.else"}, "subscriberId"), ({"type": None}, "type"),
    ({"url": None}, "url"), ({"validUntil": "tomorrow"}, "validUntil"), ({"signingPublicKey": None}, "signingPublicKey"),
])
def test_a_dedi_record_that_is_not_the_key_asked_for_is_refused(change, field) -> None:  # noqa: ANN001
    record = {"subscriberId": "s", "keyId": "k1", "type": "BAP", "url": "https://s/beckn", "signingPublicKey": "AAAA"}
    with pytest.raises(RegistryError) as err:
        parse_record({**record, **change}, "s", "k1")
    assert f"record.{field}" in str(err.value)

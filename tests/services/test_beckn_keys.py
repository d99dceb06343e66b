"""server.services.bpp.keys: our key, the file registry, and a v1 registry's /lookup (a real
HTTP server on loopback standing in for the network's registry)."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from der_sim.bap import BapIdentity
from server.beckn.registry import subscriber_json
from server.bootstrap import prepare
from server.services.bpp import keys as beckn_keys

NOW = datetime(2026, 11, 29, 12, tzinfo=timezone.utc)


class Registry:
    """A v1 registry answering POST /lookup from its entries, counting the questions."""

    def __init__(self, entries: list[dict]) -> None:
        self.entries, self.asked = entries, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                q = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.asked.append(q)
                body = json.dumps([e for e in outer.entries if e["subscriber_id"] == q["subscriber_id"]]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def registry():  # noqa: ANN201
    bap = BapIdentity.generate("bap.remote", "http://127.0.0.1:9/bap")
    r = Registry([subscriber_json(bap.subscriber(valid_until=NOW + timedelta(hours=1)))])
    yield r, bap
    r.close()


def test_our_key_is_made_once_private_and_registered_as_a_bpp(settings) -> None:  # noqa: ANN001
    prepare(settings, say=lambda _m: None).dispose()
    path = settings.beckn_key_path
    assert path.stat().st_mode & 0o777 == 0o600
    first = path.read_text()
    prepare(settings, say=lambda _m: None).dispose()
    assert path.read_text() == first
    entry = beckn_keys.our_entry(settings, NOW)
    assert (entry.type, entry.subscriber_id, entry.url) == ("BPP", settings.beckn_subscriber_id, settings.beckn_uri)


def test_a_v1_registry_is_asked_once_and_its_answer_kept_until_the_key_expires(settings, registry) -> None:  # noqa: ANN001
    r, bap = registry
    clock = [NOW.timestamp()]
    keys = beckn_keys.KeyRegistry(settings.with_(beckn_registry_url=r.url), clock=lambda: clock[0])
    public = bap.registry_entry()["signing_public_key"]
    assert keys("bap.remote", "k1") == public
    assert keys("bap.remote", "k1") == public
    assert len(r.asked) == 1 and r.asked[0] == {"subscriber_id": "bap.remote", "unique_key_id": "k1"}
    clock[0] += 3601  # past valid_until: asked again, and the expired key is not used
    assert keys("bap.remote", "k1") is None and len(r.asked) == 2
    assert keys("bap.unknown", "k1") is None and keys("bap.unknown", "k1") is None
    assert len(r.asked) == 3  # an unknown key is remembered for a minute, not asked at every request


def test_an_unreachable_registry_trusts_nobody(settings) -> None:  # noqa: ANN001
    keys = beckn_keys.KeyRegistry(settings.with_(beckn_registry_url="http://127.0.0.1:9"))
    assert keys("bap.remote", "k1") is None


def test_the_file_registry_is_read_again_when_it_changes(settings) -> None:  # noqa: ANN001
    keys = beckn_keys.KeyRegistry(settings)
    assert keys("bap.local", "k1") is None  # no file yet
    bap = BapIdentity.generate("bap.local", "http://127.0.0.1:9/bap")
    beckn_keys.add_to_file_registry(settings, bap.subscriber())
    assert keys("bap.local", "k1") == bap.registry_entry()["signing_public_key"]
    other = BapIdentity.generate("bap.local", "http://127.0.0.1:9/bap")  # the key is replaced
    beckn_keys.add_to_file_registry(settings, other.subscriber())
    assert keys("bap.local", "k1") == other.registry_entry()["signing_public_key"]
    settings.beckn_registry_path.write_text("{not json")
    assert keys("bap.local", "k1") is None  # a broken file trusts nobody

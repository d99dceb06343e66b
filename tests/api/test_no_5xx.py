"""No input produces a 5xx: a seeded, bounded probe of every route with odd ids, query strings,
headers and bodies, as device, aggregator, stranger and operator. (That refused requests change
nothing is asserted where each refusal is tested: test_edev, test_admin.)"""

from __future__ import annotations

import random

from server.services import tokens

IDS = ["1", "0", "-1", "2147483647", "2147483648", "99999999999999999999", "abc", "%00", "1.5", "²", "1/../../etc"]
QUERIES = ["", "?l=5", "?s=²", "?l=-1", "?a=١", "?s=1&s=2", "?l=" + "9" * 40, "?%ff=%fe", "?l"]
BODIES = [
    b"",
    b"<",
    b"\xff\xfe\x00<",
    b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>1</sFDI><changedTime>0</changedTime></EndDevice>',
    b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>99999999999999999999999</sFDI><changedTime>0</changedTime></EndDevice>',
    b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><lFDI>' + b"F" * 40 + b"</lFDI><sFDI>0</sFDI><changedTime>-9223372036854775808</changedTime></EndDevice>",
    b'<?xml version="1.0" encoding="UTF-16"?><EndDevice/>',
    b'{"lfdi": null, "pin": 1e400}',
    b"[" * 5000,
    b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>1</sFDI><changedTime>0</changedTime><postRate>4294967295</postRate></EndDevice>',
    b'{"lfdi": "' + b"AB" * 20 + b'", "post_rate": 4294967295, "seconds": 4294967295}',
    b'<Response xmlns="urn:ieee:std:2030.5:ns"><endDeviceLFDI>' + b"AB" * 20 + b"</endDeviceLFDI><status>1</status><subject>" + b"00" * 16 + b"</subject></Response>",
    b'<DERSettings xmlns="urn:ieee:std:2030.5:ns"><setGradW>0</setGradW><setMaxW><multiplier>0</multiplier><value>-5</value></setMaxW><updatedTime>0</updatedTime></DERSettings>',
]
TEMPLATES = ["/dcap", "/tm", "/edev", "/edev/{id}", "/edev/{id}/rg", "/edev/{id}/x", "/edev/{id}/fsa",
             "/edev/{id}/fsa/{id}", "/edev/{id}/fsa/{id}/derp", "/edev/{id}/derp/{id}", "/edev/{id}/derp/{id}/derc",
             "/edev/{id}/derp/{id}/derc/{id}", "/edev/{id}/derp/{id}/actderc", "/edev/{id}/derp/{id}/dderc",
             "/edev/{id}/der", "/edev/{id}/der/{id}", "/edev/{id}/der/{id}/derg", "/rsps", "/rsps/{id}",
             "/rsps/{id}/rsp", "/rsps/{id}/rsp/{id}", "/admin/api/v1/devices",
             "/admin/api/v1/devices/{id}", "/admin/api/v1/devices/{id}/post-rate", "/admin/api/v1/poll-rates/{id}",
             "/admin/api/v1/aggregators", "/admin/api/v1/poll-rates/dcap", "//edev", "/edev/"]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
CTYPES = ["application/sep+xml", "application/json", "text/plain", "application/sep+xml; charset=latin-1", ""]


def test_random_requests_never_get_5xx(app, database, cast, client_for) -> None:  # noqa: ANN001
    from server.services.sep2 import derp, edev

    with database.transaction() as s:
        token = tokens.create_token(s, "probe", 0)
        dev = edev.register_out_of_band(s, cast["owner"].lfdi, 0).id
        prog = derp.create_der_program(s, description=None, primacy=0, now=0).id
        derp.add_members(s, prog, [dev])
        derp.create_events(s, prog, start=2_000_000_000, duration=60,
                           controls=[(None, derp.control_base({"opModFixedW": 1}))], now=2_000_000_000 - 60)
    rng = random.Random(20305)
    callers = [client_for(cast[k]) for k in ("owner", "aggregator", "foreign")] + [client_for(None)]
    failures = []
    for _ in range(3000):
        path = rng.choice(TEMPLATES).replace("{id}", rng.choice(IDS)) + rng.choice(QUERIES)
        method = rng.choice(METHODS)
        headers = {"Authorization": f"Bearer {token}"} if rng.random() < 0.5 else {}
        kw = {}
        if method in ("POST", "PUT", "PATCH"):
            kw = {"data": rng.choice(BODIES), "content_type": rng.choice(CTYPES)}
        resp = rng.choice(callers).open(method, path, headers=headers, **kw)
        if resp.status_code >= 500:
            failures.append((method, path, kw.get("data", b"")[:60], resp.status_code))
    assert failures == []

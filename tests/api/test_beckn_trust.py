"""Whom the BPP calls back, and for how long a signature counts, through the real Flask app.

* A `bap_uri` that could escape the BAP's registered URL (dot segments plain or percent-encoded,
  `//`, `..;`, encoded slashes, userinfo, query, fragment, another origin, a prefix of the text but
  not of the segments) is refused with a NACK naming `context.bap_uri`: 400 when the URL has more
  than one reading, 401 when it is well-formed but outside the registration. Nothing is stored and
  a worker pass afterwards has nothing to send.
* Equivalent spellings of the registered URL (scheme and host case, default port, a trailing
  slash, an escaped unreserved character) are accepted, and the callback goes to the canonical form.
* A signature valid longer than `beckn_signature_max_lifetime_seconds` (default 300 s) is a 401
  NACK saying so; exactly the limit is accepted; the limit is a setting.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from server.app import create_beckn_app
from server.db import beckn as store
from tests.api.test_beckn_inbound import (  # noqa: F401  (fixtures)
    ACK, BAP_URI, RecordingBap, assert_ack, assert_nack, assert_nothing_happens, bap, bap_client, bpp, bpp_key, count,
    make_body, make_worker, post, run_pass, sign,
)

HOST = "http://bap.inbound.test"
assert BAP_URI == f"{HOST}/beckn"

AMBIGUOUS = [
    f"{HOST}/beckn/../other",
    f"{HOST}/beckn/x/../../other",
    f"{HOST}/beckn/%2e%2e/other",
    f"{HOST}/beckn/%2E%2e/other",
    f"{HOST}/beckn/%252e%252e/other",
    f"{HOST}/beckn/..;/other",
    f"{HOST}/beckn%2f..%2fother",
    f"{HOST}/beckn/..%5cother",
    f"{HOST}/beckn//other",
    f"{HOST}/beckn/./x",
    f"{HOST}/beckn?x=1",
    f"{HOST}/beckn?",
    "http://bap.inbound.test@evil.example/beckn",
    "http://@bap.inbound.test/beckn",
]
OUTSIDE = [
    f"{HOST}/other",
    f"{HOST}/becknother",
    f"{HOST}/beckn-other/x",
    f"{HOST}/",
    "https://bap.inbound.test/beckn",  # another scheme: another origin
    f"{HOST}:8080/beckn",
    "http://bap.inbound.test.evil.example/beckn",
    "http://127.0.0.1/beckn",
]


@pytest.mark.parametrize("uri", AMBIGUOUS)
def test_a_bap_uri_with_more_than_one_reading_is_400_nack_and_nothing_follows(uri, database, bpp, bap, bap_client,
                                                                              make_worker) -> None:  # noqa: ANN001
    body, _ = make_body(bap_client, "search", fields={"bap_uri": uri})
    assert_nack(post(bpp, "search", body, sign(body, bap)), 400, "30000", "context.bap_uri")
    assert_nothing_happens(database, make_worker)


@pytest.mark.parametrize("uri", OUTSIDE)
def test_a_bap_uri_outside_the_registered_url_is_401_nack_and_nothing_follows(uri, database, bpp, bap, bap_client,
                                                                              make_worker) -> None:  # noqa: ANN001
    body, _ = make_body(bap_client, "search", fields={"bap_uri": uri})
    error = assert_nack(post(bpp, "search", body, sign(body, bap)), 401, "30000", "context.bap_uri")
    assert "registered URL" in error["message"]
    assert_nothing_happens(database, make_worker)


@pytest.mark.parametrize(("uri", "callback"), [
    (BAP_URI, f"{HOST}/beckn/on_search"),
    ("HTTP://BAP.Inbound.Test:80/beckn/", f"{HOST}/beckn/on_search"),
    (f"{HOST}/%62eckn/tenant-7", f"{HOST}/beckn/tenant-7/on_search"),
])
def test_an_equivalent_bap_uri_is_accepted_and_called_in_canonical_form(uri, callback, database, bpp, bap,
                                                                        bap_client, make_worker) -> None:  # noqa: ANN001
    body, _ = make_body(bap_client, "search", fields={"bap_uri": uri})
    assert_ack(post(bpp, "search", body, sign(body, bap)))
    send = RecordingBap(ACK)
    run_pass(make_worker(send), database)
    assert [url for url, _, _ in send.calls] == [callback]


def test_a_registration_that_escapes_is_no_base_for_anything(settings, database, bap, bap_client,
                                                             make_worker) -> None:  # noqa: ANN001
    """A registry entry whose own URL is ambiguous trusts no bap_uri (the operator must fix it)."""
    from server.services.bpp import keys as beckn_keys

    beckn_keys.add_to_file_registry(settings, dataclasses.replace(bap.subscriber(), url=f"{HOST}/beckn/../"))
    client = create_beckn_app(settings, database).test_client()
    body, _ = make_body(bap_client, "search")
    error = assert_nack(post(client, "search", body, sign(body, bap)), 401, "30000")
    assert "registered URL is unusable" in error["message"]
    assert_nothing_happens(database, make_worker)


# --------------------------------------------------------------------------- signature lifetimes


@pytest.mark.parametrize("ttl_s", [301, 3600, 10 * 365 * 86_400])
def test_a_signature_valid_longer_than_the_limit_is_401_nack(ttl_s, settings, database, bpp, bap, bap_client,
                                                             make_worker) -> None:  # noqa: ANN001
    assert settings.beckn_signature_max_lifetime_seconds == 300
    body, _ = make_body(bap_client, "search")
    error = assert_nack(post(bpp, "search", body, sign(body, bap, ttl_s=ttl_s)), 401)
    assert f"valid for {ttl_s} s" in error["message"] and "at most 300 s" in error["message"], error
    assert_nothing_happens(database, make_worker)


def test_a_signature_valid_exactly_the_limit_is_accepted(database, bpp, bap, bap_client) -> None:  # noqa: ANN001
    body, _ = make_body(bap_client, "search")
    assert_ack(post(bpp, "search", body, sign(body, bap, ttl_s=300)))
    assert count(database, store.BecknInbox) == 1


def test_the_limit_is_a_setting(settings, database, bpp_key, bap, bap_client) -> None:  # noqa: ANN001
    longer = dataclasses.replace(settings, beckn_signature_max_lifetime_seconds=3600)
    client = create_beckn_app(longer, database).test_client()
    body, _ = make_body(bap_client, "search")
    assert_ack(post(client, "search", body, sign(body, bap, now=datetime.now(UTC), ttl_s=3600)))
    body, _ = make_body(bap_client, "search")
    assert_nack(post(client, "search", body, sign(body, bap, ttl_s=3601)), 401)
    assert count(database, store.BecknInbox) == 1

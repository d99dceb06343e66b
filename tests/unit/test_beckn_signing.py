"""BECKN-006 signing: the spec's worked example reproduced exactly, round trips, and every refusal.

The worked example is read from `$BECKN_REFERENCE_DIR/signing_test_vector.json` (the official
reference folder, never copied into the project); those tests skip when the variable is unset.
Everything else uses keys made here from fixed seeds."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from server.beckn import signing
from server.beckn.signing import (
    BadSignature,
    DigestMismatch,
    InvalidValidity,
    MalformedSignature,
    MissingSignature,
    SignatureError,
    SignatureExpired,
    SignatureNotYetValid,
    SignatureParams,
    SigningKey,
    SubscriberMismatch,
    UnknownKey,
    UnsupportedAlgorithm,
)

REFERENCE_ENV = "BECKN_REFERENCE_DIR"

BAP = "bap.example.org"
KEY_ID = "k1"
SEED = base64.b64encode(bytes(range(32))).decode()
OTHER_SEED = base64.b64encode(bytes(range(100, 132))).decode()
NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
BODY = b'{"context":{"action":"status","bap_id":"bap.example.org"},"message":{"order_id":"o-1"}}'


@pytest.fixture(scope="module")
def vector() -> dict[str, Any]:
    folder = os.environ.get(REFERENCE_ENV)
    if not folder:
        pytest.skip(f"{REFERENCE_ENV} is not set: point it at the official Beckn v1.1.0 reference "
                    "folder (CI sets it) to check the spec's signing worked example")
    path = Path(folder) / "signing_test_vector.json"
    if not path.is_file():
        pytest.fail(f"{REFERENCE_ENV}={folder} has no signing_test_vector.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _key(seed: str = SEED, subscriber: str = BAP) -> SigningKey:
    return SigningKey.from_b64(subscriber, KEY_ID, seed)


def _lookup(seed: str = SEED):
    public = signing.public_key_b64(signing.load_private_key(seed))
    return lambda subscriber, key_id: public if (subscriber, key_id) == (BAP, KEY_ID) else None


def _verify(header: str | None, body: bytes = BODY, *, now: datetime = NOW, **kw: Any) -> SignatureParams:
    kw.setdefault("key_lookup", _lookup())
    kw.setdefault("expected_subscriber", BAP)
    return signing.verify(header, body, now=now, **kw)


def _signed(created: int, expires: int, body: bytes = BODY, *, key_id: str = f"{BAP}|{KEY_ID}|ed25519",
            algorithm: str = "ed25519", seed: str = SEED) -> str:
    sig = signing.sign(body, signing.load_private_key(seed), created=created, expires=expires)
    return (f'Signature keyId="{key_id}",algorithm="{algorithm}",created="{created}",'
            f'expires="{expires}",headers="(created) (expires) digest",'
            f'signature="{base64.b64encode(sig).decode()}"')


T = int(NOW.timestamp())

# ------------------------------------------------------------------------------- worked example


def test_worked_example_digest(vector: dict[str, Any]) -> None:
    """Digest = base64(BLAKE2b-512(raw body bytes)), exactly as the spec's example."""
    body = vector["raw_body_exact_bytes"].encode("utf-8")
    assert signing.digest_b64(body) == vector["digest_b64_blake2b512"]
    fox = vector["blake2b512_fox_test"]
    assert signing.digest_b64(fox["input"].encode()) == fox["b64"]


def test_worked_example_signing_string(vector: dict[str, Any]) -> None:
    """(created): …\\n(expires): …\\ndigest: BLAKE-512=… with no trailing newline."""
    body = vector["raw_body_exact_bytes"].encode("utf-8")
    text = signing.signing_string(vector["created"], vector["expires"], body)
    assert text == vector["signing_string"]
    assert not text.endswith("\n")


@pytest.mark.parametrize("form", ["signing_private_key_seed_b64_32byte",
                                  "signing_private_key_b64_libsodium_64byte"])
def test_worked_example_signature_from_either_key_form(vector: dict[str, Any], form: str) -> None:
    """Ed25519 is deterministic: the 32-byte seed and libsodium's 64-byte key give the spec's bytes."""
    key = signing.load_private_key(vector[form])
    assert signing.public_key_b64(key) == vector["signing_public_key_b64"]
    body = vector["raw_body_exact_bytes"].encode("utf-8")
    sig = signing.sign(body, key, created=vector["created"], expires=vector["expires"])
    assert base64.b64encode(sig).decode() == vector["signature_b64"]


def test_worked_example_header_renders_and_parses_exactly(vector: dict[str, Any]) -> None:
    header = vector["authorization_header"]
    params = signing.parse_authorization(header)
    assert (params.subscriber_id, params.unique_key_id) == ("example-bap.com",
                                                            "ae3ea24b-cfec-495e-81f8-044aaef164ac")
    assert params.render() == header
    key = SigningKey.from_b64(params.subscriber_id, params.unique_key_id,
                              vector["signing_private_key_b64_libsodium_64byte"])
    created = datetime.fromtimestamp(vector["created"], UTC)
    body = vector["raw_body_exact_bytes"].encode("utf-8")
    ttl = vector["expires"] - vector["created"]
    assert signing.authorization_header(body, key, now=created, ttl_s=ttl) == header


def test_worked_example_verifies_inside_its_window_only(vector: dict[str, Any]) -> None:
    body = vector["raw_body_exact_bytes"].encode("utf-8")

    def lookup(subscriber: str, key_id: str) -> str:
        return vector["signing_public_key_b64"]

    inside = datetime.fromtimestamp(vector["created"] + 60, UTC)
    signing.verify(vector["authorization_header"], body, now=inside, key_lookup=lookup,
                   expected_subscriber="example-bap.com")
    with pytest.raises(SignatureExpired):
        signing.verify(vector["authorization_header"], body, now=NOW, key_lookup=lookup,
                       expected_subscriber="example-bap.com")


def test_worked_example_keyid_is_not_the_bodys_bap_id(vector: dict[str, Any]) -> None:
    """The spec's example is signed as example-bap.com while its body claims bap.stayhalo.in: a BPP
    that checks keyId against context.bap_id (as it must) refuses it."""
    body = vector["raw_body_exact_bytes"].encode("utf-8")
    bap_id = json.loads(body)["context"]["bap_id"]
    inside = datetime.fromtimestamp(vector["created"] + 60, UTC)
    with pytest.raises(SubscriberMismatch):
        signing.verify(vector["authorization_header"], body, now=inside,
                       key_lookup=lambda s, k: vector["signing_public_key_b64"], expected_subscriber=bap_id)


# ----------------------------------------------------------------------------------- round trips


def test_sign_then_verify_round_trip() -> None:
    header = signing.authorization_header(BODY, _key(), now=NOW, ttl_s=30)
    params = _verify(header)
    assert (params.created, params.expires) == (T, T + 30)
    assert signing.parse_authorization(params.render()) == params


def test_verify_accepts_a_loaded_public_key_from_the_lookup() -> None:
    public = signing.load_private_key(SEED).public_key()
    assert isinstance(public, Ed25519PublicKey)
    _verify(signing.authorization_header(BODY, _key(), now=NOW), key_lookup=lambda s, k: public)


def test_parser_accepts_spaces_any_order_and_bare_unix_times() -> None:
    """Parameters in any order, optional spaces after commas, created/expires bare (draft-cavage)."""
    p = signing.parse_authorization(_signed(T, T + 30))
    sig = base64.b64encode(p.signature).decode()
    reordered = (f'signature signature="{sig}", headers="(created) (expires) digest", '
                 f'expires={T + 30}, created={T}, algorithm="ed25519", keyId="{BAP}|{KEY_ID}|ed25519"')
    assert signing.parse_authorization(reordered) == p


def test_signature_is_over_the_raw_bytes_not_a_reserialised_parse() -> None:
    """Verify over the raw received bytes: the same JSON with other spacing does not verify."""
    header = signing.authorization_header(BODY, _key(), now=NOW)
    respaced = json.dumps(json.loads(BODY)).encode()
    assert respaced != BODY
    with pytest.raises(BadSignature):
        _verify(header, respaced)


def test_matching_digest_header_is_accepted() -> None:
    header = signing.authorization_header(BODY, _key(), now=NOW)
    _verify(header, digest_header=f"BLAKE-512={signing.digest_b64(BODY)}")


def test_private_key_forms() -> None:
    seed = signing.load_private_key(SEED)
    public = base64.b64decode(signing.public_key_b64(seed))
    full = base64.b64encode(base64.b64decode(SEED) + public).decode()
    assert signing.public_key_b64(signing.load_private_key(full)) == signing.public_key_b64(seed)
    wrong_half = base64.b64encode(base64.b64decode(SEED) + bytes(32)).decode()
    for bad in (wrong_half, base64.b64encode(bytes(31)).decode(), "not base64!", ""):
        with pytest.raises(ValueError):
            signing.load_private_key(bad)
    with pytest.raises(ValueError):
        signing.load_public_key(base64.b64encode(bytes(33)).decode())


def test_www_authenticate() -> None:
    """401 answers carry WWW-Authenticate: Signature realm="{bpp_id}",headers="(created) (expires) digest"."""
    assert signing.www_authenticate("bpp.flex.example") == \
        'Signature realm="bpp.flex.example",headers="(created) (expires) digest"'
    with pytest.raises(ValueError):
        signing.www_authenticate('evil",x="y')


def test_time_is_an_aware_datetime() -> None:
    with pytest.raises(ValueError):
        signing.authorization_header(BODY, _key(), now=datetime(2025, 1, 1))
    with pytest.raises(ValueError):
        _verify(signing.authorization_header(BODY, _key(), now=NOW), now=datetime(2025, 1, 1))


def test_signing_identity_cannot_break_the_header() -> None:
    for subscriber in ("a|b", 'a"b', "", "a\nb"):
        with pytest.raises(ValueError):
            SigningKey.from_b64(subscriber, KEY_ID, SEED)


# ------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header(header: str | None) -> None:
    with pytest.raises(MissingSignature):
        _verify(header)


_GOOD = _signed(T, T + 30)
_SIG = _GOOD.rsplit('signature="', 1)[1].rstrip('"')


@pytest.mark.parametrize(("header", "why"), [
    ("Bearer abc", "scheme"),
    ("Signature", "lacks"),
    (_GOOD.replace("Signature ", "Signature\t"), "scheme"),
    (_GOOD + ',extra="1"', "unknown"),
    (_GOOD + ',algorithm="ed25519"', "twice"),
    (_GOOD.replace(',algorithm="ed25519"', ""), "lacks algorithm"),
    (_GOOD.replace(',headers="(created) (expires) digest"', ""), "lacks headers"),
    (_GOOD + ",", "comma"),
    (_GOOD.replace('algorithm="ed25519"', "algorithm=ed25519"), "cannot parse"),
    (_GOOD.replace(f'keyId="{BAP}|{KEY_ID}|ed25519"', f"keyId={T}"), "quoted"),
    (_GOOD.replace(f"{BAP}|{KEY_ID}|ed25519", f"{BAP}|ed25519"), "keyId"),
    (_GOOD.replace(f"{BAP}|{KEY_ID}|ed25519", f"|{KEY_ID}|ed25519"), "keyId"),
    (_GOOD.replace(f"{BAP}|{KEY_ID}|ed25519", f"{BAP}|{KEY_ID}|ed25519|x"), "keyId"),
    (_GOOD.replace("(created) (expires) digest", "(created) digest"), "headers"),
    (_GOOD.replace("(created) (expires) digest", "(created) (expires) digest host"), "headers"),
    (_GOOD.replace("(created) (expires) digest", "(expires) (created) digest"), "headers"),
    (_GOOD.replace(f'created="{T}"', 'created="soon"'), "created"),
    (_GOOD.replace(f'created="{T}"', f'created="-{T}"'), "created"),
    (_GOOD.replace(f'expires="{T + 30}"', f'expires="{T}.5"'), "expires"),
    (_GOOD.replace(f'expires="{T + 30}"', 'expires=""'), "expires"),
    (_GOOD.replace(_SIG, _SIG[:-4]), "signature"),
    (_GOOD.replace(_SIG, "!" + _SIG[1:]), "signature"),
    (_GOOD.replace(_SIG, base64.b64encode(bytes(63)).decode()), "signature"),
    (_GOOD.replace(f'keyId="{BAP}', f'keyId="\\"{BAP}'), "cannot parse"),
    (_GOOD.replace(',algorithm=', ' ; algorithm='), "cannot parse"),
    (_GOOD + "x" * 5000, "longer"),
])
def test_malformed_header(header: str, why: str) -> None:
    """Every malformed part is refused with a message that says which."""
    with pytest.raises(MalformedSignature, match=why):
        _verify(header)


@pytest.mark.parametrize("header", [
    _signed(T, T + 30, algorithm="hs2019"),
    _signed(T, T + 30, algorithm="ED25519"),
    _signed(T, T + 30, key_id=f"{BAP}|{KEY_ID}|rsa-sha256"),
])
def test_algorithm_other_than_ed25519(header: str) -> None:
    """Algorithm mismatch, in the algorithm parameter or in keyId, is refused."""
    with pytest.raises(UnsupportedAlgorithm):
        _verify(header)


def test_expired() -> None:
    """expires in the past (beyond the skew) is refused; the skew's edge is still accepted."""
    header = _signed(T - 100, T - 10)
    _verify(header, skew_s=10)
    with pytest.raises(SignatureExpired):
        _verify(header, skew_s=9)
    with pytest.raises(SignatureExpired):
        _verify(header, now=NOW + timedelta(days=1))


def test_created_in_the_future() -> None:
    """created after now + skew is refused; within the skew it is accepted."""
    _verify(_signed(T + 5, T + 35), skew_s=5)
    with pytest.raises(SignatureNotYetValid):
        _verify(_signed(T + 6, T + 36), skew_s=5)


def test_expires_before_created() -> None:
    with pytest.raises(InvalidValidity):
        _verify(_signed(T, T - 1))


def test_keyid_subscriber_is_not_the_bap_id() -> None:
    header = signing.authorization_header(BODY, _key(subscriber="other-bap.example"), now=NOW)
    with pytest.raises(SubscriberMismatch):
        _verify(header, key_lookup=lambda s, k: signing.public_key_b64(signing.load_private_key(SEED)))


def test_unknown_key() -> None:
    header = signing.authorization_header(BODY, SigningKey.from_b64(BAP, "k2", SEED), now=NOW)
    with pytest.raises(UnknownKey):
        _verify(header)
    with pytest.raises(UnknownKey, match="unusable"):
        _verify(signing.authorization_header(BODY, _key(), now=NOW), key_lookup=lambda s, k: "bm90IGEga2V5")


def test_wrong_key() -> None:
    header = signing.authorization_header(BODY, _key(), now=NOW)
    with pytest.raises(BadSignature):
        _verify(header, key_lookup=_lookup(OTHER_SEED))


def test_tampered_body() -> None:
    header = signing.authorization_header(BODY, _key(), now=NOW)
    tampered = BODY.replace(b"o-1", b"o-2")
    with pytest.raises(BadSignature):
        _verify(header, tampered)
    with pytest.raises(DigestMismatch):
        _verify(header, tampered, digest_header=f"BLAKE-512={signing.digest_b64(BODY)}")


def test_tampered_times_or_signature() -> None:
    """created/expires are signed: changing them, or one bit of the signature, breaks verification."""
    good = signing.parse_authorization(signing.authorization_header(BODY, _key(), now=NOW))
    flipped = bytes([good.signature[0] ^ 1]) + good.signature[1:]
    for forged in (SignatureParams(**{**_fields(good), "expires": good.expires + 3600}),
                   SignatureParams(**{**_fields(good), "signature": flipped})):
        with pytest.raises(BadSignature):
            _verify(forged.render())


def _fields(p: SignatureParams) -> dict[str, Any]:
    return {name: getattr(p, name) for name in SignatureParams.__dataclass_fields__}


def test_each_refusal_has_its_own_reason() -> None:
    kinds = [MissingSignature, MalformedSignature, UnsupportedAlgorithm, SignatureNotYetValid,
             SignatureExpired, InvalidValidity, SubscriberMismatch, UnknownKey, DigestMismatch,
             BadSignature]
    assert all(issubclass(k, SignatureError) for k in kinds)
    assert len({k.reason for k in kinds}) == len(kinds)


def test_a_lifetime_over_the_callers_cap_is_refused_and_the_cap_is_inclusive() -> None:
    """expires - created over max_lifetime_s is LifetimeTooLong, checked before the key is looked up;
    without a cap any lifetime verifies (the spec's worked example is valid for an hour)."""
    long = signing.authorization_header(BODY, _key(), now=NOW, ttl_s=301)
    with pytest.raises(signing.LifetimeTooLong, match="valid for 301 s"):
        _verify(long, max_lifetime_s=300, key_lookup=lambda s, k: pytest.fail("looked up a key"))
    _verify(signing.authorization_header(BODY, _key(), now=NOW, ttl_s=300), max_lifetime_s=300)
    _verify(long)

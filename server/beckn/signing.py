"""BECKN-006 message signing: BLAKE2b-512 digest, Ed25519, the `Authorization: Signature` header.

Signing string (no trailing newline), over the exact bytes sent or received — never a re-serialised
parse:

    (created): {created}\\n(expires): {expires}\\ndigest: BLAKE-512={base64(blake2b-512(body))}

Header: `Signature keyId="{subscriber_id}|{unique_key_id}|ed25519",algorithm="ed25519",
created="{unix}",expires="{unix}",headers="(created) (expires) digest",signature="{base64}"`.

The parser is strict: the scheme `Signature` (any case); `name="value"` parameters separated by
commas with optional spaces; exactly keyId, algorithm, created, expires, headers and signature, each
once, in any order; created and expires are decimal unix seconds (quoted, or bare as
draft-cavage-http-signatures allows); keyId has three non-empty `|`-separated parts; the algorithm
is ed25519 in keyId and in `algorithm`; headers is exactly "(created) (expires) digest"; the
signature is standard base64 of 64 bytes. Header at most 4096 characters.

`verify` then refuses, in this order: created later than now + skew; expires earlier than now - skew;
expires before created; a lifetime (expires - created) over `max_lifetime_s` when the caller caps it
(the BPP does, `DERFLEX_BECKN_SIGNATURE_MAX_LIFETIME_SECONDS`: a signature valid for years is a
replayable credential; the spec's own worked example is valid for an hour); a keyId subscriber other than the expected one (the request's bap_id); a
key the lookup does not know; a `Digest` header (when the transport passes one) that does not match
the body; a signature that does not verify. Each refusal is its own SignatureError subclass with a
stable `reason`, for a 401 NACK with `WWW-Authenticate: Signature realm="{bpp_id}",headers="…"`.
Without a Digest header a tampered body and a wrong key are indistinguishable: both are BadSignature.

Private keys are base64 of the 32-byte Ed25519 seed or of libsodium's 64-byte seed‖public form (the
spec's example); public keys base64 of 32 bytes. `now` is always a parameter (an aware datetime).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "ed25519"
SIGNED_HEADERS = "(created) (expires) digest"
MAX_HEADER_CHARS = 4096
_PARAMS = ("keyId", "algorithm", "created", "expires", "headers", "signature")
_PARAM = re.compile(r'[ \t]*([A-Za-z]+)=(?:"([^"\\]*)"|([0-9]+))[ \t]*(?:,|\Z)')
_UNIX = re.compile(r"[0-9]{1,12}")
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")

# -------------------------------------------------------------------------------------- failures


class SignatureError(Exception):
    """The request's signature is not acceptable; `reason` is a stable code for logs and NACKs."""

    reason = "invalid"


class MissingSignature(SignatureError):
    reason = "missing"


class MalformedSignature(SignatureError):
    reason = "malformed"


class UnsupportedAlgorithm(SignatureError):
    reason = "algorithm"


class SignatureNotYetValid(SignatureError):
    reason = "created_in_future"


class SignatureExpired(SignatureError):
    reason = "expired"


class InvalidValidity(SignatureError):
    reason = "expires_before_created"


class LifetimeTooLong(SignatureError):
    reason = "lifetime_too_long"


class SubscriberMismatch(SignatureError):
    reason = "subscriber_mismatch"


class UnknownKey(SignatureError):
    reason = "unknown_key"


class DigestMismatch(SignatureError):
    reason = "digest_mismatch"


class BadSignature(SignatureError):
    reason = "bad_signature"


# ------------------------------------------------------------------------------------- primitives


def blake2b_512(body: bytes) -> bytes:
    """The 64-byte BLAKE2b digest of `body` (unkeyed)."""
    return hashlib.blake2b(body, digest_size=64).digest()


def digest_b64(body: bytes) -> str:
    return base64.b64encode(blake2b_512(body)).decode("ascii")


def signing_string(created: int, expires: int, body: bytes) -> str:
    """The exact text that is signed (no trailing newline)."""
    return f"(created): {created}\n(expires): {expires}\ndigest: BLAKE-512={digest_b64(body)}"


def load_private_key(b64: str) -> Ed25519PrivateKey:
    """A private key from base64 of a 32-byte seed or a 64-byte seed‖public (libsodium) key.

    Raises ValueError for anything else, or when the public half does not belong to the seed."""
    raw = _b64decode(b64, "private key")
    if len(raw) not in (32, 64):
        raise ValueError(f"an Ed25519 private key is 32 or 64 bytes, not {len(raw)}")
    key = Ed25519PrivateKey.from_private_bytes(raw[:32])
    if len(raw) == 64 and raw[32:] != _raw_public(key.public_key()):
        raise ValueError("the 64-byte key's public half does not match its seed")
    return key


def load_public_key(b64: str) -> Ed25519PublicKey:
    """A public key from base64 of its 32 bytes; ValueError otherwise."""
    raw = _b64decode(b64, "public key")
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, not {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The base64 public key a registry publishes as `signing_public_key`."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return base64.b64encode(_raw_public(public)).decode("ascii")


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _b64decode(text: str, what: str) -> bytes:
    if not _B64.fullmatch(text.strip()):
        raise ValueError(f"the {what} is not base64")
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the {what} is not base64") from None


def _unix(now: datetime) -> int:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be an aware datetime")
    return int(now.timestamp())


# ----------------------------------------------------------------------------------------- header


@dataclass(frozen=True, slots=True, kw_only=True)
class SignatureParams:
    """The parsed parameters of an `Authorization: Signature` header."""

    subscriber_id: str
    unique_key_id: str
    algorithm: str
    created: int
    expires: int
    headers: str
    signature: bytes

    @property
    def key_id(self) -> str:
        return f"{self.subscriber_id}|{self.unique_key_id}|{self.algorithm}"

    def render(self) -> str:
        """The header value, in the spec's parameter order."""
        sig = base64.b64encode(self.signature).decode("ascii")
        return (f'Signature keyId="{self.key_id}",algorithm="{self.algorithm}",'
                f'created="{self.created}",expires="{self.expires}",headers="{self.headers}",'
                f'signature="{sig}"')


@dataclass(frozen=True, slots=True)
class SigningKey:
    """Our identity on the network: subscriber_id, unique_key_id and the Ed25519 private key."""

    subscriber_id: str
    unique_key_id: str
    private_key: Ed25519PrivateKey

    @classmethod
    def from_b64(cls, subscriber_id: str, unique_key_id: str, private_b64: str) -> SigningKey:
        for name, value in (("subscriber_id", subscriber_id), ("unique_key_id", unique_key_id)):
            if not value or any(c in value for c in '|"\\') or not value.isprintable():
                raise ValueError(f"{name} must be non-empty, printable, without | \" or \\")
        return cls(subscriber_id, unique_key_id, load_private_key(private_b64))


def sign(body: bytes, private_key: Ed25519PrivateKey, *, created: int, expires: int) -> bytes:
    """The 64-byte Ed25519 signature of the signing string for `body`."""
    return private_key.sign(signing_string(created, expires, body).encode("ascii"))


def authorization_header(body: bytes, key: SigningKey, *, now: datetime, ttl_s: int = 30) -> str:
    """The `Authorization` value for sending `body`: created = now, expires = now + ttl_s."""
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    created = _unix(now)
    expires = created + ttl_s
    return SignatureParams(
        subscriber_id=key.subscriber_id, unique_key_id=key.unique_key_id, algorithm=ALGORITHM,
        created=created, expires=expires, headers=SIGNED_HEADERS,
        signature=sign(body, key.private_key, created=created, expires=expires),
    ).render()


def www_authenticate(realm: str) -> str:
    """The `WWW-Authenticate` value of a 401 answer; `realm` is our subscriber id (bpp_id)."""
    if '"' in realm or "\\" in realm:
        raise ValueError("the realm must not contain quotes or backslashes")
    return f'Signature realm="{realm}",headers="{SIGNED_HEADERS}"'


def parse_authorization(header: str | None) -> SignatureParams:
    """The strict parse described in the module docstring; SignatureError subclasses otherwise."""
    if header is None or not header.strip():
        raise MissingSignature("the Authorization header is missing")
    if len(header) > MAX_HEADER_CHARS:
        raise MalformedSignature(f"the Authorization header is longer than {MAX_HEADER_CHARS} characters")
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "signature":
        raise MalformedSignature(f"the Authorization scheme must be Signature, not {scheme[:20]!r}")
    params = _split_params(rest.strip())
    missing = [name for name in _PARAMS if name not in params]
    if missing:
        raise MalformedSignature(f"the signature lacks {', '.join(missing)}")
    key_parts = params["keyId"].split("|")
    if len(key_parts) != 3 or not all(key_parts):
        raise MalformedSignature('keyId must be "{subscriber_id}|{unique_key_id}|{algorithm}"')
    if key_parts[2] != ALGORITHM:
        raise UnsupportedAlgorithm(f"keyId names algorithm {key_parts[2][:20]!r}; only ed25519 is accepted")
    if params["algorithm"] != ALGORITHM:
        raise UnsupportedAlgorithm(f"algorithm {params['algorithm'][:20]!r} is not supported; use ed25519")
    if params["headers"] != SIGNED_HEADERS:
        raise MalformedSignature(f'headers must be exactly "{SIGNED_HEADERS}"')
    created, expires = (_unix_param(params, name) for name in ("created", "expires"))
    signature = params["signature"]
    if not _B64.fullmatch(signature) or len(signature) != 88:
        raise MalformedSignature("signature must be the base64 of a 64-byte Ed25519 signature")
    return SignatureParams(subscriber_id=key_parts[0], unique_key_id=key_parts[1], algorithm=ALGORITHM,
                           created=created, expires=expires, headers=SIGNED_HEADERS,
                           signature=base64.b64decode(signature, validate=True))


def _split_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _PARAM.match(text, pos)
        if m is None or m.end() == pos:
            raise MalformedSignature(f"cannot parse the signature parameters at {text[pos:pos + 30]!r}")
        name, quoted, bare = m.groups()
        if name not in _PARAMS:
            raise MalformedSignature(f"unknown signature parameter {name[:20]!r}")
        if name in params:
            raise MalformedSignature(f"signature parameter {name} appears twice")
        if bare is not None and name not in ("created", "expires"):
            raise MalformedSignature(f"signature parameter {name} must be quoted")
        params[name] = quoted if bare is None else bare
        pos = m.end()
        if text[m.end() - 1] == "," and pos >= len(text):
            raise MalformedSignature("the signature parameters end with a comma")
    return params


def _unix_param(params: dict[str, str], name: str) -> int:
    value = params[name]
    if not _UNIX.fullmatch(value):
        raise MalformedSignature(f"{name} must be unix seconds, not {value[:20]!r}")
    return int(value)


# ----------------------------------------------------------------------------------------- verify

#: (subscriber_id, unique_key_id) -> the signer's public key (base64 or loaded), or None if unknown.
KeyLookup = Callable[[str, str], str | Ed25519PublicKey | None]


def verify(header: str | None, body: bytes, *, now: datetime, key_lookup: KeyLookup,
           expected_subscriber: str, skew_s: int = 5, digest_header: str | None = None,
           max_lifetime_s: int | None = None) -> SignatureParams:
    """Check a received request's signature over its raw `body`; the parsed header if it holds.

    `expected_subscriber` is the sender the body claims (a request's context.bap_id).
    `digest_header` is the request's `Digest` header if the transport received one.
    `max_lifetime_s`: the longest expires - created accepted (None: any)."""
    params = parse_authorization(header)
    t = _unix(now)
    if params.created > t + skew_s:
        raise SignatureNotYetValid(f"created {params.created} is after now ({t}) + {skew_s} s")
    if params.expires < t - skew_s:
        raise SignatureExpired(f"the signature expired at {params.expires} (now {t})")
    if params.expires < params.created:
        raise InvalidValidity(f"expires {params.expires} is before created {params.created}")
    if max_lifetime_s is not None and params.expires - params.created > max_lifetime_s:
        raise LifetimeTooLong(f"the signature is valid for {params.expires - params.created} s "
                              f"(created {params.created}, expires {params.expires}); at most "
                              f"{max_lifetime_s} s is accepted")
    if params.subscriber_id != expected_subscriber:
        raise SubscriberMismatch(f"keyId subscriber {params.subscriber_id[:80]!r} is not the sender "
                                 f"{expected_subscriber[:80]!r}")
    found = key_lookup(params.subscriber_id, params.unique_key_id)
    if found is None:
        raise UnknownKey(f"no key {params.unique_key_id[:80]!r} is registered for {params.subscriber_id[:80]!r}")
    try:
        public = load_public_key(found) if isinstance(found, str) else found
    except ValueError as exc:
        raise UnknownKey(f"the registered key is unusable: {exc}") from None
    if digest_header is not None and digest_header.strip() != f"BLAKE-512={digest_b64(body)}":
        raise DigestMismatch("the Digest header does not match the body")
    message = signing_string(params.created, params.expires, body).encode("ascii")
    try:
        public.verify(params.signature, message)
    except InvalidSignature:
        raise BadSignature("the signature does not verify over this body with the registered key "
                           "(tampered body or wrong key)") from None
    return params

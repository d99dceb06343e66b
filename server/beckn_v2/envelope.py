"""Beckn v2 envelopes: the request `{"context", "message"}`, the synchronous Ack with its
CounterSignature, NACKs, and callback bodies.

- A request body is a bounded JSON object (server.beckn.codec: size, depth, duplicates, NaN…) with
  an object `context` and an object `message` (core: `required: [context, message]`). Every
  attribute pack in the message must be one we serve (server.beckn_v2.packs, 40007 otherwise).
- The answer is core `Ack` at the top level: `{"status": "ACK"|"NACK", "signature": <CounterSignature>}`
  plus `error` `{errorCode, errorMessage}` on a NACK (400/401) or an AckNoCallback (409). The HTTP
  status carries the meaning (errors.py).
- CounterSignature: our Ed25519 signature in the `Signature` header format over

      (created): {created}
      (expires): {expires}
      digest: BLAKE-512={base64 BLAKE2b-512 of the Ack body without its `signature`}
      (request-digest): BLAKE-512={base64 BLAKE2b-512 of the raw request body}
      (message-id): {the request's context.messageId, "" when unreadable}

  with `headers="(created) (expires) digest (request-digest) (message-id)"`. Core fixes the five
  lines; the `headers=` value and which bytes "the Ack body" means (it contains the signature) are
  UNCONFIRMED: we sign the compact JSON of the Ack without `signature`, keys in the order
  status, error. `verify_counter_signature` checks one (our BAP does, on every Ack it gets).
- A callback body is `{"context", "message"}`; a business fault is `{"context", "error"}` (core
  AsyncError = Error; the docs draft's `message {@type: AsyncError}` wrapper is not in core).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from server.beckn import signing
from server.beckn.codec import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, JsonError, parse_json, render_json
from server.beckn_v2 import packs
from server.beckn_v2.context import Context, parse_context
from server.beckn_v2.errors import V2Code, V2Error, error_object

COUNTER_HEADERS = "(created) (expires) digest (request-digest) (message-id)"
COUNTER_TTL_S = 60


@dataclass(frozen=True, slots=True)
class Request:
    """A validated request: its typed context and its `message` object."""

    context: Context
    message: dict[str, Any]


def parse_body(body: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH) -> dict[str, Any]:
    """Bounded JSON (V2Error 30000 otherwise)."""
    try:
        return parse_json(body, max_bytes=max_bytes, max_depth=max_depth)
    except JsonError as exc:
        raise V2Error(exc.message, exc.path) from None


def parse_request(body: bytes | dict[str, Any], *, action: str, bpp_id: str, now: datetime,
                  skew: timedelta = timedelta(seconds=5), networks: Collection[str] | None = None) -> Request:
    """The raw body (or its parse) of a request to this BPP's `action` endpoint, or V2Error."""
    doc = parse_body(body) if isinstance(body, bytes) else body
    context = parse_context(doc.get("context"), action=action, bpp_id=bpp_id, now=now, skew=skew, networks=networks)
    message = doc.get("message")
    if message is None:
        raise V2Error("is missing", "message")
    if not isinstance(message, dict):
        raise V2Error("must be an object", "message")
    contract = message.get("contract")
    if isinstance(contract, dict) and contract.get("id") is not None:
        _uuid(contract["id"], "message.contract.id")
    packs.check_message(message, "message")
    return Request(context=context, message=message)


def _uuid(value: Any, path: str) -> None:
    """core Contract.id is `format: uuid` (set by the BPP): anything else cannot name our contract."""
    try:
        ok = isinstance(value, str) and str(uuid.UUID(value)) == value.lower()
    except ValueError:
        ok = False
    if not ok:
        raise V2Error(f"{str(value)[:60]!r} is not a uuid (core Contract.id)", path)


# ---------------------------------------------------------------------------------------- the Ack


def _counter_string(created: int, expires: int, ack_unsigned: bytes, request_body: bytes, message_id: str) -> bytes:
    return (f"(created): {created}\n(expires): {expires}\n"
            f"digest: BLAKE-512={signing.digest_b64(ack_unsigned)}\n"
            f"(request-digest): BLAKE-512={signing.digest_b64(request_body)}\n"
            f"(message-id): {message_id}").encode("utf-8")


def counter_signature(ack_unsigned: bytes, request_body: bytes, message_id: str, key: signing.SigningKey, *,
                      now: datetime, ttl_s: int = COUNTER_TTL_S) -> str:
    """The CounterSignature string for an Ack whose body without `signature` is `ack_unsigned`."""
    created = int(now.timestamp())
    expires = created + ttl_s
    sig = key.private_key.sign(_counter_string(created, expires, ack_unsigned, request_body, message_id))
    return (f'Signature keyId="{key.subscriber_id}|{key.unique_key_id}|{signing.ALGORITHM}",'
            f'algorithm="{signing.ALGORITHM}",created="{created}",expires="{expires}",'
            f'headers="{COUNTER_HEADERS}",signature="{base64.b64encode(sig).decode("ascii")}"')


def ack_body(status: str, request_body: bytes, message_id: str, key: signing.SigningKey, *, now: datetime,
             error: dict[str, str] | None = None) -> dict[str, Any]:
    """`{"status", "signature"[, "error"]}`, counter-signed."""
    if status not in ("ACK", "NACK"):
        raise ValueError("status is ACK or NACK")
    unsigned: dict[str, Any] = {"status": status}
    if error is not None:
        unsigned["error"] = error
    signature = counter_signature(render_json(unsigned), request_body, message_id, key, now=now)
    out: dict[str, Any] = {"status": status, "signature": signature}
    if error is not None:
        out["error"] = error
    return out


def nack_body(exc: V2Error, request_body: bytes, message_id: str, key: signing.SigningKey, *,
              now: datetime) -> dict[str, Any]:
    return ack_body("NACK", request_body, message_id, key, now=now, error=error_object(exc.code, exc.message, exc.path))


class CounterSignatureError(ValueError):
    """An Ack whose counter-signature does not hold."""


def verify_counter_signature(ack: dict[str, Any], request_body: bytes, message_id: str,
                             public_key: str | Ed25519PublicKey, *, now: datetime, skew_s: int = 5,
                             expected_signer: str | None = None) -> None:
    """Check an Ack's counter-signature against the request it answers; CounterSignatureError."""
    header = ack.get("signature")
    if not isinstance(header, str):
        raise CounterSignatureError("the Ack has no signature")
    fields: dict[str, str] = {}
    rest = header.removeprefix("Signature ").strip()
    for part in rest.split(","):
        name, _, value = part.partition("=")
        fields[name.strip()] = value.strip().strip('"')
    try:
        signer, _key_id, algorithm = fields["keyId"].split("|")
        created, expires = int(fields["created"]), int(fields["expires"])
        signature = base64.b64decode(fields["signature"], validate=True)
    except (KeyError, ValueError, binascii.Error):
        raise CounterSignatureError(f"not a counter-signature: {header[:80]!r}") from None
    if algorithm != signing.ALGORITHM or fields.get("algorithm") != signing.ALGORITHM:
        raise CounterSignatureError("the counter-signature is not ed25519")
    if fields.get("headers") != COUNTER_HEADERS:
        raise CounterSignatureError(f"headers must be {COUNTER_HEADERS!r}")
    if expected_signer is not None and signer != expected_signer:
        raise CounterSignatureError(f"signed by {signer!r}, not {expected_signer!r}")
    t = int(now.timestamp())
    if created > t + skew_s or expires < t - skew_s or expires < created:
        raise CounterSignatureError("the counter-signature is not valid now")
    unsigned = {k: ack[k] for k in ("status", "error") if k in ack}
    key = signing.load_public_key(public_key) if isinstance(public_key, str) else public_key
    try:
        key.verify(signature, _counter_string(created, expires, render_json(unsigned), request_body, message_id))
    except InvalidSignature:
        raise CounterSignatureError("the counter-signature does not verify") from None


# -------------------------------------------------------------------------------------- callbacks


def callback_body(context: Context, message: dict[str, Any] | None = None,
                  error: dict[str, str] | None = None) -> dict[str, Any]:
    """`{"context", "message"}`, or `{"context", "error"}` for a business fault."""
    out: dict[str, Any] = {"context": context.to_json()}
    if message is not None:
        out["message"] = message
    if error is not None:
        out["error"] = error
    return out


def business_error(code: V2Code, message: str, path: str | None = None) -> dict[str, str]:
    return error_object(code, message, path)


def render(body: dict[str, Any]) -> bytes:
    """The exact bytes to send (and to sign)."""
    return render_json(body)

"""A DeDi directory's answer (Beckn v2's registry): `GET {registry}/dedi/lookup?subscriberId=…&keyId=…`
gives one record of the subscriber's key, read here into the v1 `Subscriber` value the key lookup
already uses (server.beckn.registry), so signature checks do not care which registry answered.

Record (docs `08_DeDi_Registry_Integration.md`, a working draft: the live API's exact shape is
UNCONFIRMED): an object, or one under `data`, `record` or `details`, with `subscriberId`, `keyId`,
`signingPublicKey` (base64 Ed25519), `validFrom`/`validUntil` (RFC 3339, optional), `status`
(optional; only SUBSCRIBED or absent is usable), and the subscriber's `type` (or `role`: BAP, BPP)
and `url` (or `subscriberUrl`). Type and URL are required: the BPP checks that a request's signer
is a BAP and that its bapUri lies under the registered URL, and will not guess either. A record
for another subscriber or key is refused (RegistryError naming the field).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from server.beckn.registry import RegistryError, Subscriber
from server.beckn.timefmt import parse_timestamp

MAX_FIELD = 2048


def lookup_path(subscriber_id: str, key_id: str) -> str:
    """The request path and query of a DeDi lookup."""
    return "/dedi/lookup?" + urlencode({"subscriberId": subscriber_id, "keyId": key_id})


def _field(record: Mapping[str, Any], *names: str, required: bool = True) -> str | None:
    for name in names:
        value = record.get(name)
        if value is not None:
            if not isinstance(value, str) or not value or len(value) > MAX_FIELD or not value.isprintable():
                raise RegistryError(f"dedi record.{name}: must be 1 to {MAX_FIELD} printable characters")
            return value
    if required:
        raise RegistryError(f"dedi record.{names[0]}: is missing")
    return None


def parse_record(doc: Any, subscriber_id: str, key_id: str) -> Subscriber:
    """The Subscriber a DeDi lookup answered for (subscriber_id, key_id), or RegistryError."""
    record = doc
    for wrapper in ("data", "record", "details"):
        if isinstance(record, Mapping) and isinstance(record.get(wrapper), Mapping):
            record = record[wrapper]
    if not isinstance(record, Mapping):
        raise RegistryError("dedi record: must be an object")
    sid = _field(record, "subscriberId", "subscriber_id")
    kid = _field(record, "keyId", "key_id", "uniqueKeyId")
    if sid != subscriber_id:
        raise RegistryError(f"dedi record.subscriberId: {str(sid)[:80]!r} is not {subscriber_id!r}")
    if kid != key_id:
        raise RegistryError(f"dedi record.keyId: {str(kid)[:80]!r} is not {key_id!r}")
    kind = (_field(record, "type", "role") or "").upper()
    if kind not in ("BAP", "BPP", "BG", "BREG"):
        raise RegistryError(f"dedi record.type: {kind[:20]!r} is not BAP, BPP, BG or BREG")
    times = {}
    for name in ("validFrom", "validUntil"):
        text = _field(record, name, required=False)
        try:
            times[name] = parse_timestamp(text) if text is not None else None
        except ValueError as exc:
            raise RegistryError(f"dedi record.{name}: {exc}") from None
    return Subscriber(subscriber_id=sid, unique_key_id=kid, type=kind,
                      signing_public_key=_field(record, "signingPublicKey", "signing_public_key") or "",
                      url=_field(record, "url", "subscriberUrl"), domain=_field(record, "domain", required=False),
                      valid_from=times["validFrom"], valid_until=times["validUntil"],
                      status=(_field(record, "status", required=False) or "SUBSCRIBED").upper())

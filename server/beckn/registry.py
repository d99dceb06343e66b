"""Registry entries (v1 `Subscription`): who is on the network and which signing key is theirs.

The same shape serves three places: the answer of a v1 registry's `POST /lookup` (a JSON array of
Subscription objects), the embedded file registry of the default setup (`{"subscribers": [...]}`,
the same objects), and what `derflex beckn keys` prints for an operator to register.

Rules (`find_key`): a key is usable at `now` when its entry has status SUBSCRIBED (or no status:
a hand-written file entry), `valid_from` is not after `now` and `valid_until` not before it.
Entries are keyed by (subscriber_id, unique_key_id); `unique_key_id` is the v1 field name (the
schema's `key_id` is also read, as some registries send that).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.beckn.signing import load_public_key
from server.beckn.timefmt import parse_timestamp, render_timestamp

__all__ = ["RegistryError", "Subscriber", "find_key", "parse_subscribers", "registry_file", "subscriber_json"]

TYPES = ("BAP", "BPP", "BG", "BREG")


class RegistryError(ValueError):
    """A registry answer or file that cannot be read; the message names the entry and field."""


@dataclass(frozen=True, slots=True)
class Subscriber:
    subscriber_id: str
    unique_key_id: str
    type: str
    signing_public_key: str  # base64 of the 32-byte Ed25519 public key
    url: str | None = None
    domain: str | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    status: str | None = "SUBSCRIBED"

    def usable_at(self, now: datetime) -> bool:
        return (self.status in (None, "SUBSCRIBED")
                and (self.valid_from is None or self.valid_from <= now)
                and (self.valid_until is None or now <= self.valid_until))


def _text(entry: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    value = entry.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or not value.isprintable():
        raise RegistryError(f"{where}.{key}: must be a non-empty printable text, got {value!r}")
    return value


def _time(entry: Mapping[str, Any], key: str, where: str) -> datetime | None:
    value = entry.get(key)
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{where}.{key}: {exc}") from None


def parse_subscribers(obj: Any) -> list[Subscriber]:
    """Entries from a lookup answer (a list) or a registry file ({"subscribers": [...]})."""
    if isinstance(obj, Mapping):
        if set(obj) != {"subscribers"}:
            raise RegistryError('a registry file is {"subscribers": [...]}')
        obj = obj["subscribers"]
    if not isinstance(obj, list):
        raise RegistryError("a registry answer is a JSON array of subscriptions")
    out = []
    for i, entry in enumerate(obj):
        where = f"subscribers[{i}]"
        if not isinstance(entry, Mapping):
            raise RegistryError(f"{where}: must be an object")
        key_id = entry.get("unique_key_id", entry.get("key_id"))
        kind = _text(entry, "type", where)
        if kind not in TYPES:
            raise RegistryError(f"{where}.type: must be one of {', '.join(TYPES)}, got {kind!r}")
        public = _text(entry, "signing_public_key", where)
        try:
            load_public_key(public or "")
        except ValueError as exc:
            raise RegistryError(f"{where}.signing_public_key: {exc}") from None
        out.append(Subscriber(
            subscriber_id=_text(entry, "subscriber_id", where) or "",
            unique_key_id=_text({"unique_key_id": key_id}, "unique_key_id", where) or "",
            type=kind, signing_public_key=public or "",
            url=_text(entry, "url", where, required=False) or _text(entry, "subscriber_url", where, required=False),
            domain=_text(entry, "domain", where, required=False),
            valid_from=_time(entry, "valid_from", where), valid_until=_time(entry, "valid_until", where),
            status=_text(entry, "status", where, required=False),
        ))
    return out


def find_key(entries: Iterable[Subscriber], subscriber_id: str, unique_key_id: str, now: datetime) -> Subscriber | None:
    """The usable entry for this key at `now`, or None."""
    for e in entries:
        if e.subscriber_id == subscriber_id and e.unique_key_id == unique_key_id and e.usable_at(now):
            return e
    return None


def subscriber_json(s: Subscriber) -> dict[str, Any]:
    """One entry in the v1 Subscription shape (what a registry stores and a lookup returns)."""
    out: dict[str, Any] = {"subscriber_id": s.subscriber_id, "unique_key_id": s.unique_key_id, "type": s.type,
                           "signing_public_key": s.signing_public_key}
    for key in ("url", "domain", "status"):
        if getattr(s, key) is not None:
            out[key] = getattr(s, key)
    for key in ("valid_from", "valid_until"):
        if getattr(s, key) is not None:
            out[key] = render_timestamp(getattr(s, key))
    return out


def registry_file(entries: Iterable[Subscriber]) -> dict[str, Any]:
    return {"subscribers": [subscriber_json(s) for s in entries]}

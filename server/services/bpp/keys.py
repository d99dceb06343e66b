"""Keys on the Beckn network: ours (the BPP's signing key, made on first run) and the BAPs'
(looked up in a registry).

* Our key is the base64 Ed25519 seed in `<home>/var/beckn-signing.key` (0600); `our_entry` is the
  registry entry an operator registers for it (`derflex beckn keys`).
* `KeyRegistry` is the `key_lookup` of server.beckn.signing.verify. With no registry URL it reads
  the file registry `<home>/var/beckn-registry.json` (`{"subscribers": [...]}`, v1 Subscription
  objects), again whenever the file changes. With a URL it asks the v1 registry
  (`POST {url}/lookup` with subscriber_id and unique_key_id), or with DERFLEX_BECKN_REGISTRY_KIND=dedi
  the v2 DeDi directory (`GET {url}/dedi/lookup?subscriberId&keyId`, server.beckn_v2.registry), and
  keeps each answer until the key's `valid_until` (at most a day; an unknown key is asked again
  after a minute).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from server.beckn.registry import RegistryError, Subscriber, find_key, parse_subscribers
from server.beckn.signing import SigningKey, public_key_b64
from server.beckn_v2 import registry as dedi
from server.config import Settings

LOOKUP_TIMEOUT_S = 5.0
MAX_CACHE_S = 86_400.0
NEGATIVE_CACHE_S = 60.0
MAX_CACHED_KEYS = 10_000


def new_private_key_b64() -> str:
    seed = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return base64.b64encode(seed).decode("ascii")


def signing_key(settings: Settings) -> SigningKey:
    """Our key; FileNotFoundError names the file when the server was never prepared."""
    text = settings.beckn_key_path.read_text().strip()
    return SigningKey.from_b64(settings.beckn_subscriber_id, settings.beckn_unique_key_id, text)


def our_entry(settings: Settings, now: datetime, *, valid_days: int = 365) -> Subscriber:
    key = signing_key(settings)
    return Subscriber(subscriber_id=settings.beckn_subscriber_id, unique_key_id=settings.beckn_unique_key_id,
                      type="BPP", signing_public_key=public_key_b64(key.private_key), url=settings.beckn_uri,
                      domain=settings.beckn_domain, valid_from=now, valid_until=now + timedelta(days=valid_days),
                      status="SUBSCRIBED")


class KeyRegistry:
    """Public keys by (subscriber_id, unique_key_id), from the file registry or a v1 registry."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time):
        self.url = settings.beckn_registry_url.rstrip("/")
        self.kind = settings.beckn_registry_kind  # "lookup" (v1) or "dedi" (v2)
        self.path: Path = settings.beckn_registry_path
        self.clock = clock
        self._lock = threading.Lock()
        self._file: tuple[object, list[Subscriber]] = (None, [])
        self._cache: dict[tuple[str, str], tuple[float, Subscriber | None]] = {}

    def __call__(self, subscriber_id: str, unique_key_id: str) -> str | None:
        entry = self.lookup(subscriber_id, unique_key_id)
        return entry.signing_public_key if entry is not None else None

    def lookup(self, subscriber_id: str, unique_key_id: str) -> Subscriber | None:
        now = datetime.fromtimestamp(self.clock(), timezone.utc)
        if not self.url:
            return find_key(self._file_entries(), subscriber_id, unique_key_id, now)
        key = (subscriber_id, unique_key_id)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > self.clock():
            return hit[1] if hit[1] is None or hit[1].usable_at(now) else None
        entry = find_key(self._ask(subscriber_id, unique_key_id), subscriber_id, unique_key_id, now)
        until = self.clock() + NEGATIVE_CACHE_S
        if entry is not None:
            valid = entry.valid_until.timestamp() if entry.valid_until else self.clock() + MAX_CACHE_S
            until = min(valid, self.clock() + MAX_CACHE_S)
        with self._lock:
            if len(self._cache) >= MAX_CACHED_KEYS:  # anyone can name a key: keep the cache bounded
                for stale in list(self._cache)[: MAX_CACHED_KEYS // 10]:
                    del self._cache[stale]
            self._cache[key] = (until, entry)
        return entry

    def _file_entries(self) -> list[Subscriber]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return []
        mtime = (st.st_mtime_ns, st.st_size, st.st_ino)  # a rewrite within one clock tick shows in size or inode
        with self._lock:
            if mtime != self._file[0]:
                try:
                    entries = parse_subscribers(json.loads(self.path.read_text()))
                except (OSError, ValueError, RegistryError):
                    entries = []  # a half-written or broken file trusts nobody until it is fixed
                self._file = (mtime, entries)
            return self._file[1]

    def _ask(self, subscriber_id: str, unique_key_id: str) -> list[Subscriber]:
        if self.kind == "dedi":
            return self._ask_dedi(subscriber_id, unique_key_id)
        body = json.dumps({"subscriber_id": subscriber_id, "unique_key_id": unique_key_id}).encode()
        req = urllib.request.Request(f"{self.url}/lookup", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=LOOKUP_TIMEOUT_S) as resp:  # noqa: S310 (operator's URL)
                return parse_subscribers(json.loads(resp.read(1_000_000)))
        except (OSError, ValueError, RegistryError):
            return []

    def _ask_dedi(self, subscriber_id: str, unique_key_id: str) -> list[Subscriber]:
        req = urllib.request.Request(self.url + dedi.lookup_path(subscriber_id, unique_key_id), method="GET",
                                     headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=LOOKUP_TIMEOUT_S) as resp:  # noqa: S310 (operator's URL)
                return [dedi.parse_record(json.loads(resp.read(1_000_000)), subscriber_id, unique_key_id)]
        except (OSError, ValueError, RegistryError):  # 404 (no such key) is an HTTPError: nobody
            return []


def add_to_file_registry(settings: Settings, entry: Subscriber) -> None:
    """Put (or replace) an entry in the file registry: how a local BAP is made known."""
    from server.beckn.registry import registry_file

    path = settings.beckn_registry_path
    try:
        entries = parse_subscribers(json.loads(path.read_text()))
    except FileNotFoundError:
        entries = []
    entries = [e for e in entries if (e.subscriber_id, e.unique_key_id) != (entry.subscriber_id, entry.unique_key_id)]
    entries.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(registry_file(entries), indent=2) + "\n")
    tmp.replace(path)

"""Settings: one frozen object, built from the environment and command-line options at start-up.

Nothing is read at import time. Every setting has an environment variable `DERFLEX_<NAME>`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ConfigError(ValueError):
    """A setting has a value the server cannot run with; the message says which and why."""


_NETWORK_ID = re.compile(r"[A-Za-z0-9.-]+/[A-Za-z0-9._-]+(@[A-Za-z0-9.-]+(:[0-9]+)?)?")

@dataclass(frozen=True)
class Settings:
    home: Path = Path(".")
    database_url: str = ""  # default: SQLite at <home>/var/derflex.db
    pki_dir: Path | None = None  # default: <home>/certs
    bind: str = "127.0.0.1:8443"
    workers: int = 1
    threads: int = 8
    # The front of every worker (server/front.py): connections are handshaken and their request
    # heads read on its event loop, never by a thread, within these bounds. Per worker process:
    # at most max_connections open (gunicorn's worker_connections; the oldest still arriving is
    # closed for a new one); at most max_pending_per_address not yet past their first request
    # from one address (0: no limit; trusted proxies exempt); keep-alive kept this long.
    max_connections: int = 4096
    max_pending_per_address: int = 256
    keepalive_seconds: int = 75
    tls_handshake_timeout_seconds: int = 10
    request_head_timeout_seconds: int = 10
    # Server certificate, key and the CA bundle clients are verified against; default: the dev PKI.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    trust_file: Path | None = None
    # TLS: CCM8 only (strict 2030.5) unless the GCM fallback is asked for explicitly.
    tls_allow_gcm: bool = False
    # Behind a TLS-terminating proxy: plain HTTP, the client certificate in a header that is
    # trusted only from these addresses.
    proxy_mode: bool = False
    proxy_cert_header: str = "X-SSL-Client-Cert"
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    timezone: str = "UTC"
    poll_rate: int = 900
    allow_inband_registration: bool = True
    max_body_bytes: int = 256 * 1024
    # Rendered device-scoped GET bodies are reused for at most this long (0: never cache). Any
    # write through derflex, in any process, invalidates them within a quarter second; this
    # bound is only for changes that bypass derflex (hand-made SQL). Longer than the longest
    # pollRate (900 s by default), so a device polling at its rate finds its documents still
    # there. At most response_cache_entries documents per family and process: beyond that the
    # least recently used one goes (about 1 kB each).
    response_cache_seconds: int = 1800
    response_cache_entries: int = 200_000
    demo_devices: int = 0  # pre-registered demo devices created by `derflex serve --demo`
    # Run the flexibility scheduler in the server's workers (exactly one of them leads).
    scheduler: bool = True
    scheduler_reconcile_seconds: int = 30
    # The Beckn BPP: its own listener (plain HTTP: put it behind a TLS proxy on a real network;
    # BAPs have no 2030.5 client certificate), our identity on the network, and the registry that
    # holds the BAPs' keys: a v1 registry's URL, or "" for the file <home>/var/beckn-registry.json.
    beckn_bind: str = "127.0.0.1:8081"  # "" (DERFLEX_BECKN_BIND= or =off) switches the facade off
    beckn_subscriber_id: str = "bpp.derflex.local"
    beckn_subscriber_uri: str = ""  # default: http://<beckn_bind>/beckn
    beckn_unique_key_id: str = "k1"
    beckn_registry_url: str = ""
    beckn_domain: str = "deg:demand-flexibility"
    # A BAP's signature valid longer than this (expires - created) is refused: a long-lived one
    # is a replayable credential.
    beckn_signature_max_lifetime_seconds: int = 300
    # Beckn v2.0.0 (/beckn/v2): the networkIds served ({namespace}/{registry}[@{host}], comma
    # separated; empty: a request may name any network or none), and how many meters one
    # on_status performance page carries (more go as further pages, BecknPageInfo).
    beckn_v2_networks: tuple[str, ...] = ()
    beckn_v2_page_size: int = 1000
    # How beckn_registry_url is asked for a BAP's key: "lookup" (v1: POST {url}/lookup) or "dedi"
    # (GET {url}/dedi/lookup?subscriberId&keyId, the v2 DeDi directory). No URL: the file registry.
    beckn_registry_kind: str = "lookup"
    # A v2 catalog service (CDS): the BPP sends it catalog/publish whenever its programs change
    # ("": none; `derflex beckn catalog` shows what was last published and when).
    beckn_catalog_url: str = ""
    # 2030.5 notifications: where they may go. By default only https:// to a public address;
    # "http", "loopback" and "private" (RFC 1918 / unique-local) each lift one rule (tests and
    # closed networks: DERFLEX_NOTIFICATION_ALLOW=http,loopback,private).
    notification_allow: tuple[str, ...] = ()
    # Per receiver: how many notifications may be in flight at once (each its own keep-alive
    # connection), and how long one may take before it counts as failed.
    notification_connections: int = 2
    notification_timeout_seconds: int = 10
    # The operator dashboard (server.ui): its own HTTPS listener (TLS 1.2/1.3, standard suites, the
    # server's certificate; browsers cannot speak CCM8). "" or "off" switches it off.
    ui_bind: str = "127.0.0.1:8444"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"unknown time zone {self.timezone!r} (use an IANA name)") from None
        if not 1 <= self.poll_rate <= 2**32 - 1:
            raise ConfigError("poll_rate must be a positive number of seconds")
        if self.workers < 1 or self.threads < 1:
            raise ConfigError("workers and threads must be at least 1")
        if not self.threads + 16 <= self.max_connections <= 65_536:
            raise ConfigError("max_connections must be between threads + 16 and 65536")
        if not 0 <= self.max_pending_per_address <= 65_536:
            raise ConfigError("max_pending_per_address must be between 0 (no limit) and 65536")
        if not 0 <= self.keepalive_seconds <= 3600:
            raise ConfigError("keepalive_seconds must be between 0 (no keep-alive) and 3600")
        for name in ("tls_handshake_timeout_seconds", "request_head_timeout_seconds"):
            if not 1 <= getattr(self, name) <= 300:
                raise ConfigError(f"{name} must be between 1 and 300")
        if not 0 <= self.response_cache_seconds <= 86_400:
            raise ConfigError("response_cache_seconds must be between 0 and 86400")
        if not 1 <= self.response_cache_entries <= 10_000_000:
            raise ConfigError("response_cache_entries must be between 1 and 10000000")
        if not 1 <= self.scheduler_reconcile_seconds <= 3600:
            raise ConfigError("scheduler_reconcile_seconds must be between 1 and 3600")
        unknown = sorted(set(self.notification_allow) - {"http", "loopback", "private"})
        if unknown:
            raise ConfigError(f"notification_allow takes http, loopback and private, not {', '.join(unknown)}")
        if not 1 <= self.notification_connections <= 64:
            raise ConfigError("notification_connections must be between 1 and 64")
        if not 1 <= self.notification_timeout_seconds <= 300:
            raise ConfigError("notification_timeout_seconds must be between 1 and 300")
        if self.max_body_bytes < 1024:
            raise ConfigError("max_body_bytes must be at least 1024")
        if not 1 <= self.beckn_signature_max_lifetime_seconds <= 86_400:
            raise ConfigError("beckn_signature_max_lifetime_seconds must be between 1 and 86400")
        for network in self.beckn_v2_networks:
            if not _NETWORK_ID.fullmatch(network):
                raise ConfigError(f"beckn_v2_networks: {network!r} is not a networkId ({{namespace}}/{{registry}}"
                                  "[@{host}], e.g. nfh.global/testnet-deg)")
        if not 1 <= self.beckn_v2_page_size <= 100_000:
            raise ConfigError("beckn_v2_page_size must be between 1 and 100000")
        if self.beckn_registry_kind not in ("lookup", "dedi"):
            raise ConfigError(f"beckn_registry_kind must be lookup or dedi, not {self.beckn_registry_kind!r}")
        if self.beckn_catalog_url and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", self.beckn_catalog_url):
            raise ConfigError(f"beckn_catalog_url must be an http(s) URL, not {self.beckn_catalog_url!r}")

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'var' / 'derflex.db').resolve()}"

    @property
    def certs_dir(self) -> Path:
        return self.pki_dir or self.home / "certs"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def beckn_uri(self) -> str:
        return self.beckn_subscriber_uri or f"http://{self.beckn_bind}/beckn"

    @property
    def beckn_key_path(self) -> Path:
        return self.home / "var" / "beckn-signing.key"

    @property
    def beckn_registry_path(self) -> Path:
        return self.home / "var" / "beckn-registry.json"

    @property
    def admin_token_path(self) -> Path:
        return self.home / "var" / "admin-token"

    def with_(self, **changes: Any) -> "Settings":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _empty(name: str, default: Any) -> Any:
    """What a variable set to "" means: the Beckn facade off for DERFLEX_BECKN_BIND (the dashboard
    for DERFLEX_UI_BIND), an empty list
    for a list, "" for a text whose default is "" (it means the documented fallback), <home>/certs
    for DERFLEX_PKI_DIR (as `derflex pki` reads it); any other setting refuses an empty value (a
    TLS file left empty must not fall back to the dev PKI's), never silently the default."""
    if name in ("beckn_bind", "ui_bind"):
        return ""
    if name == "pki_dir":
        return None
    if isinstance(default, tuple):
        return ()
    if isinstance(default, str) and default == "":
        return ""
    shown = "" if default is None else f" ({str(default)!r})"
    raise ConfigError(f"DERFLEX_{name.upper()} is set but empty: unset it for the default{shown} or give a value")


def _coerce(name: str, raw: str, default: Any) -> Any:
    if raw.strip() == "":
        return _empty(name, default)
    if name in ("beckn_bind", "ui_bind") and raw.lower() in ("off", "none", "false", "no"):
        return ""  # the facade (or the dashboard) off, as an empty value
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"DERFLEX_{name.upper()} must be true or false, not {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"DERFLEX_{name.upper()} must be a whole number, not {raw!r}") from None
    if isinstance(default, tuple):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if isinstance(default, Path) or name in ("pki_dir", "tls_cert_file", "tls_key_file", "trust_file"):
        return Path(raw)
    return raw


def from_env(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from `DERFLEX_*` variables, then explicit overrides (command-line options)."""
    environ = os.environ if environ is None else environ
    base = Settings()
    values: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name == "extra" or overrides.get(f.name) is not None:
            continue
        raw = environ.get(f"DERFLEX_{f.name.upper()}")
        if raw is not None:
            values[f.name] = _coerce(f.name, raw, getattr(base, f.name))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)

"""First-run preparation for the embedded default: database schema, dev PKI, an admin token,
and optional pre-registered demo devices. Idempotent: a second run changes nothing."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from server.config import Settings
from server.db import migrate, repo
from server.db.session import Database
from server.pki import Credential, DevPKI
from server.services import tokens
from server.services.bpp import keys as beckn_keys
from server.services.sep2 import edev

DEMO_PIN = 111115


@dataclass(frozen=True)
class TLSFiles:
    cert: Path
    key: Path
    trust: Path


def tls_files(settings: Settings) -> TLSFiles:
    pki = DevPKI(settings.certs_dir)
    return TLSFiles(
        cert=settings.tls_cert_file or pki.server_cert_path,
        key=settings.tls_key_file or pki.server_key_path,
        trust=settings.trust_file or pki.trust_path,
    )


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
    with os.fdopen(fd, "w") as f:
        f.write(text)


def prepare(settings: Settings, *, say: Callable[[str], None] = print) -> Database:
    """Make everything the server needs exist; say what was created."""
    db = Database(settings.db_url)
    before = migrate.current_revision(db.engine)
    migrate.upgrade(db.engine)
    if before != migrate.head_revision():
        say(f"database ready at {settings.db_url} (schema {migrate.head_revision()})")
    uses_dev_pki = settings.tls_cert_file is None or settings.trust_file is None
    if uses_dev_pki and DevPKI(settings.certs_dir).ensure():
        say(f"created a dev PKI in {settings.certs_dir} (SERCA, MICA, server certificate)")
    _ensure_admin_token(settings, db, say)
    if settings.beckn_bind:
        _ensure_beckn_key(settings, say)
    return db


def _ensure_beckn_key(settings: Settings, say: Callable[[str], None]) -> None:
    """Our Ed25519 signing key for the Beckn network (base64 of the 32-byte seed, mode 0600)."""
    if settings.beckn_key_path.exists():
        return
    _write_private(settings.beckn_key_path, beckn_keys.new_private_key_b64() + "\n")
    say(f"Beckn signing key written to {settings.beckn_key_path} (mode 0600); `derflex beckn keys` "
        "prints what to register")


def _ensure_admin_token(settings: Settings, db: Database, say: Callable[[str], None]) -> None:
    with db.transaction() as s:
        if repo.list_admin_tokens(s):
            return
        token = tokens.create_token(s, "first-run", int(time.time()))
    _write_private(settings.admin_token_path, token + "\n")
    say(f"admin API token written to {settings.admin_token_path} (mode 0600)")


def ensure_demo_devices(settings: Settings, db: Database, count: int) -> list[Credential]:
    """Demo devices `demo-1…demo-N`: a certificate each, registered out of band with PIN 111115."""
    pki = DevPKI(settings.certs_dir)
    creds = []
    now = int(time.time())
    for i in range(1, count + 1):
        name = f"demo-{i}"
        try:
            cred = pki.load(name)
        except FileNotFoundError:
            cred = pki.issue(name)
        creds.append(cred)
        with db.transaction() as s:
            if repo.find_device_by_lfdi(s, cred.lfdi) is None:
                edev.register_out_of_band(s, cred.lfdi, now, pin=DEMO_PIN, label=name)
    return creds

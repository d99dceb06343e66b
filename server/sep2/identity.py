"""Device identities of IEEE 2030.5 §6.3.4: LFDI, SFDI and the check digit (also used by PINs).

Pure functions over certificate bytes; the transport decides where the certificate comes from."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time

_LFDI_RE = re.compile(r"^[0-9A-F]{40}$")


def check_digit(digits: int | str) -> int:
    """The digit that makes the sum of all decimal digits ≡ 0 (mod 10)."""
    total = sum(int(c) for c in str(digits))
    return (10 - total % 10) % 10


def with_check_digit(value: int) -> int:
    return value * 10 + check_digit(value)


def has_valid_check_digit(value: int) -> bool:
    return value >= 0 and sum(int(c) for c in str(value)) % 10 == 0


def lfdi_from_cert_der(cert_der: bytes) -> str:
    """LFDI: the leftmost 160 bits of SHA-256 over the DER certificate, 40 upper-case hex digits."""
    return hashlib.sha256(cert_der).hexdigest()[:40].upper()


def sfdi_from_lfdi(lfdi: str) -> int:
    """SFDI: the leftmost 36 bits of the LFDI as a decimal integer, followed by its check digit."""
    return with_check_digit(int(lfdi[:9], 16))


def normalize_lfdi(text: str) -> str:
    """Return the canonical (upper-case) LFDI or raise ValueError for anything not 40 hex digits."""
    value = text.strip().upper()
    if not _LFDI_RE.match(value):
        raise ValueError("lFDI must be 40 hexadecimal digits")
    return value


def is_valid_pin(pin: int) -> bool:
    """A registration PIN is 5 digits plus a check digit (e.g. 111115)."""
    return 0 <= pin <= 999_999 and has_valid_check_digit(pin)


# Certificate policy OIDs of IEEE 2030.5 (§6.11): device types under 40732.1, certificate kinds
# under 40732.2 (1 test, 2 self-signed, 3 service provider, 4 bulk-signed).
POLICY_DEVICE_PREFIX = "1.3.6.1.4.1.40732.1."
POLICY_TEST = "1.3.6.1.4.1.40732.2.1"
POLICY_SERVICE_PROVIDER = "1.3.6.1.4.1.40732.2.3"


def new_mrid(pen: int = 0) -> str:
    """A fresh mRID: 56 bits of creation time, 40 random bits, then the creator's IANA Private
    Enterprise Number (32 bits). See `new_mrids`."""
    return new_mrids(1, pen)[0]


_CLOCK = threading.Lock()
_last_us = 0


def new_mrids(n: int, pen: int = 0) -> list[str]:
    """`n` fresh mRIDs at once (a publisher makes one per device).

    They begin with the time of their making in microseconds, strictly increasing within the
    process, so a later event's mRID is the greater one: two events created in the same second
    (equal creationTime) are ordered by mRID when one supersedes the other, and client and server
    must agree on which is newer — by what both can see, not by a database id."""
    global _last_us
    if not 0 <= pen < 2**32:
        raise ValueError("a PEN is a 32-bit number")
    if n <= 0:
        return []
    with _CLOCK:
        first = max(time.time_ns() // 1000, _last_us + 1)
        _last_us = first + n - 1
    raw, tail = secrets.token_bytes(5 * n).hex().upper(), f"{pen:08X}"
    return [f"{(first + i) & (2**56 - 1):014X}" + raw[10 * i:10 * i + 10] + tail for i in range(n)]

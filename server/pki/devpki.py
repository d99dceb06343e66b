"""A development PKI shaped like IEEE 2030.5's: SERCA → MICA → device / aggregator / operator / server.

It makes the certificates a newcomer, the simulator and the tests need to run the TLS server with
real mutual authentication — never for production, where the SERCA belongs to the 2030.5 PKI and
device certificates come from their manufacturers. Every certificate carries the 2030.5 "test
certificate" policy so it can always be recognised as such.

Layout under the root folder (folders 0700, private keys 0600, created that way — never chmod'ed
after writing):

    serca.pem  serca.key        self-signed root
    mica.pem   mica.key         issuing CA (pathlen 0), signs every leaf below
    trust.pem                   SERCA + MICA: what a server verifies clients with, and clients the server
    server.pem server.key       server leaf + MICA, for ssl.SSLContext.load_cert_chain
    devices/<name>.pem|.key     leaf + MICA, and its key  (likewise aggregators/, operators/)
    foreign/ca/…, foreign/<name>.pem|.key   an unrelated CA and its devices, for refusal tests

Who is what (see server.pki.profile for the OIDs): every client certificate carries POLICY_DEVICE and
POLICY_TEST; aggregators additionally POLICY_SERVICE_PROVIDER; operators additionally POLICY_OPERATOR
(a derflex-private OID) and not POLICY_SERVICE_PROVIDER. Their hardwareModuleName has a per-kind
hwType (HW_TYPE_*) and the credential's name, UTF-8, as hwSerialNum.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from server.sep2.identity import lfdi_from_cert_der, sfdi_from_lfdi

from .profile import (
    DEVICE_NOT_AFTER,
    HW_TYPE_AGGREGATOR,
    HW_TYPE_DEVICE,
    HW_TYPE_OPERATOR,
    OID_HARDWARE_MODULE_NAME,
    POLICY_ANY,
    POLICY_DEVICE,
    POLICY_OPERATOR,
    POLICY_SERVICE_PROVIDER,
    POLICY_TEST,
    encode_hardware_module_name,
)

try:  # POSIX only; on other systems concurrent first runs are simply not serialised.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

KINDS = ("device", "aggregator", "operator")
DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1")

_NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")
_HOST_RE = re.compile(
    r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)
_ORG = "derflex (development only)"
# Leaves start a few minutes in the past so a peer whose clock is slightly behind accepts them.
_BACKDATE = dt.timedelta(minutes=5)
_SERVER_LIFETIME = dt.timedelta(days=3650)

_KIND_HW_TYPE = {
    "device": HW_TYPE_DEVICE,
    "aggregator": HW_TYPE_AGGREGATOR,
    "operator": HW_TYPE_OPERATOR,
}
_KIND_POLICIES = {
    "device": (POLICY_DEVICE, POLICY_TEST),
    "aggregator": (POLICY_DEVICE, POLICY_TEST, POLICY_SERVICE_PROVIDER),
    "operator": (POLICY_DEVICE, POLICY_TEST, POLICY_OPERATOR),
}
_LEAF_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=True,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


@dataclass(frozen=True)
class Credential:
    """A client's certificate and key on disk, and the identities derived from the certificate."""

    name: str
    kind: str  # "device" | "aggregator" | "operator"
    cert_path: Path  # PEM: the leaf first, then the MICA, so load_cert_chain() sends the chain
    key_path: Path  # PEM PKCS8 private key, mode 0600
    lfdi: str  # 40 upper-case hex over the leaf's DER
    sfdi: int


@dataclass(frozen=True)
class _Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    pem: bytes
    aki: x509.AuthorityKeyIdentifier


def validate_name(name: str) -> str:
    """Return `name` if it is a usable credential name, else raise ValueError saying why."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"invalid credential name {name!r}: use 1-128 letters, digits, '-', '_' or '.', "
            "not starting with '.'"
        )
    return name


def _validate_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown credential kind {kind!r}: expected one of {', '.join(KINDS)}")
    return kind


def _host_entry(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOST_RE.match(host) or len(host) > 253:
        raise ValueError(f"invalid host name {host!r}: expected a DNS name or an IP address")
    return x509.DNSName(host.lower())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _policies(*oids: x509.ObjectIdentifier) -> x509.CertificatePolicies:
    return x509.CertificatePolicies([x509.PolicyInformation(oid, None) for oid in oids])


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically: a temporary file created with `mode` from the start, then renamed."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have removed bits; the file is still empty
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_private(path: Path, data: bytes) -> None:
    _write(path, data, 0o600)


def _write_public(path: Path, data: bytes) -> None:
    _write(path, data, 0o644)


def _mkdir(path: Path) -> None:
    """Create `path` and any missing parents with mode 0700 (Path.mkdir gives parents the default)."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)


def _read_certs(path: Path) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except ValueError as exc:
        raise ValueError(f"{path} does not hold a PEM certificate: {exc}") from None
    return certs


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} does not hold an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC private key")
    return key


def _same_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    return cert.public_key() == key.public_key()


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when `issuer` signed `cert` (signature checked, not just names compared)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _make_issuer(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> _Issuer:
    return _Issuer(
        cert=cert,
        key=key,
        pem=cert.public_bytes(serialization.Encoding.PEM),
        aki=x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
    )


def _make_serca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(DEVICE_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(_policies(POLICY_ANY), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_mica(serca: _Issuer, common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                ]
            )
        )
        .issuer_name(serca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(DEVICE_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(_policies(POLICY_ANY), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(serca.aki, critical=False)
        .sign(serca.key, hashes.SHA256())
    )
    return cert, key


def _server_names(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [n for n in san if isinstance(n, x509.DNSName | x509.IPAddress)]


class DevPKI:
    """The dev PKI rooted at one folder. Creating the object touches nothing on disk."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.serca_path = self.root / "serca.pem"
        self.serca_key_path = self.root / "serca.key"
        self.mica_path = self.root / "mica.pem"
        self.mica_key_path = self.root / "mica.key"
        self.trust_path = self.root / "trust.pem"
        self.server_cert_path = self.root / "server.pem"
        self.server_key_path = self.root / "server.key"
        self.foreign_dir = self.root / "foreign"
        self._mica: _Issuer | None = None
        self._mica_cert: x509.Certificate | None = None  # for load(), which needs no key
        self._foreign_mica: _Issuer | None = None

    def __repr__(self) -> str:
        return f"DevPKI({str(self.root)!r})"

    # --- the CA and the server certificate ---------------------------------------------------

    def exists(self) -> bool:
        """True if the CA, the trust file and the server credential are all on disk."""
        return all(
            p.is_file()
            for p in (
                self.serca_path,
                self.serca_key_path,
                self.mica_path,
                self.mica_key_path,
                self.trust_path,
                self.server_cert_path,
                self.server_key_path,
            )
        )

    def ensure(self, hostnames: Sequence[str] = DEFAULT_HOSTNAMES) -> bool:
        """Create whatever is missing of SERCA, MICA, trust.pem and the server credential.

        The server certificate is (re)issued when it is missing, does not match its key, was not
        issued by the current MICA, or lacks one of `hostnames`; a re-issued server certificate
        names the union of its old names and `hostnames`, so names are never dropped. Existing CA
        material is never replaced; half of a key pair on disk is an error. Returns True if
        anything was created. Safe to call from several processes at once."""
        if isinstance(hostnames, str):
            hostnames = [hostnames]
        return self._ensure([_host_entry(h) for h in hostnames])

    def _ensure(self, wanted_hosts: list[x509.GeneralName] | None) -> bool:
        """`wanted_hosts=None`: make sure the CA exists, keep any server certificate as it is."""
        _mkdir(self.root)
        created = False
        with self._lock():
            serca = self._load_pair(self.serca_path, self.serca_key_path, "SERCA")
            if serca is None:
                cert, key = _make_serca("derflex dev SERCA")
                _write_private(self.serca_key_path, _key_pem(key))
                _write_public(self.serca_path, cert.public_bytes(serialization.Encoding.PEM))
                serca = _make_issuer(cert, key)
                created = True
                # A new root makes the old MICA worthless; replace it rather than refuse.
                for stale in (self.mica_path, self.mica_key_path):
                    stale.unlink(missing_ok=True)

            mica = self._load_pair(self.mica_path, self.mica_key_path, "MICA")
            if mica is not None and not issued_by(mica.cert, serca.cert):
                raise ValueError(
                    f"{self.mica_path} was not issued by {self.serca_path}: the dev CA is inconsistent; "
                    f"delete {self.root} to start a new one"
                )
            if mica is None:
                cert, key = _make_mica(serca, "derflex dev MICA")
                _write_private(self.mica_key_path, _key_pem(key))
                _write_public(self.mica_path, cert.public_bytes(serialization.Encoding.PEM))
                mica = _make_issuer(cert, key)
                created = True

            trust = serca.pem + mica.pem
            if not self.trust_path.is_file() or self.trust_path.read_bytes() != trust:
                _write_public(self.trust_path, trust)
                created = True

            created |= self._ensure_server(mica, wanted_hosts)
            self._mica, self._mica_cert = mica, mica.cert
        return created

    def _ensure_server(self, mica: _Issuer, wanted: list[x509.GeneralName] | None) -> bool:
        names: list[x509.GeneralName] = []
        if self.server_cert_path.is_file() and self.server_key_path.is_file():
            try:
                cert = _read_certs(self.server_cert_path)[0]
                usable = _same_key(cert, _read_key(self.server_key_path)) and issued_by(cert, mica.cert)
            except ValueError:
                usable = False
            if usable:
                names = _server_names(cert)
                if all(h in names for h in wanted or ()):
                    return False
        if not names and not wanted:
            wanted = [_host_entry(h) for h in DEFAULT_HOSTNAMES]
        names += [h for h in wanted or () if h not in names]
        self._issue_server(mica, names)
        return True

    def _issue_server(self, mica: _Issuer, names: list[x509.GeneralName]) -> None:
        key = _new_key()
        now = _now()
        first = names[0].value
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
                        x509.NameAttribute(NameOID.COMMON_NAME, str(first)),
                    ]
                )
            )
            .issuer_name(mica.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + _SERVER_LIFETIME)
            .add_extension(x509.SubjectAlternativeName(names), critical=True)
            .add_extension(_LEAF_KEY_USAGE, critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_policies(POLICY_DEVICE, POLICY_TEST), critical=True)
            # clientAuth too: the server is the TLS client when it POSTs notifications to subscribers
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(mica.aki, critical=False)
            .sign(mica.key, hashes.SHA256())
        )
        _write_private(self.server_key_path, _key_pem(key))
        _write_public(self.server_cert_path, cert.public_bytes(serialization.Encoding.PEM) + mica.pem)

    def _load_pair(self, cert_path: Path, key_path: Path, label: str) -> _Issuer | None:
        has_cert, has_key = cert_path.is_file(), key_path.is_file()
        if not has_cert and not has_key:
            return None
        if has_cert != has_key:
            present, missing = (cert_path, key_path) if has_cert else (key_path, cert_path)
            raise ValueError(
                f"the dev {label} is incomplete: {present} exists but {missing} is missing; "
                f"delete {present} to make a new {label}"
            )
        cert, key = _read_certs(cert_path)[0], _read_key(key_path)
        if not _same_key(cert, key):
            raise ValueError(
                f"{key_path} is not the key of {cert_path}; delete both to make a new {label}"
            )
        return _make_issuer(cert, key)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        if fcntl is None:  # pragma: no cover
            yield
            return
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _issuer(self) -> _Issuer:
        if self._mica is None:
            self._ensure(None)
        assert self._mica is not None
        return self._mica

    # --- client credentials ------------------------------------------------------------------

    def _paths(self, name: str, kind: str) -> tuple[Path, Path]:
        folder = self.root / f"{_validate_kind(kind)}s"
        validate_name(name)
        return folder / f"{name}.pem", folder / f"{name}.key"

    def issue(self, name: str, kind: str = "device", *, overwrite: bool = False) -> Credential:
        """Issue a client credential (creating the CA first if needed).

        FileExistsError if one of that kind and name exists and `overwrite` is false; ValueError
        for a bad name or kind."""
        cert_path, key_path = self._paths(name, kind)
        if not overwrite and (cert_path.exists() or key_path.exists()):
            raise FileExistsError(
                f"a {kind} credential named {name!r} already exists in {cert_path.parent} "
                "(use overwrite=True, or --overwrite on the command line, to replace it)"
            )
        issuer = self._issuer()
        _mkdir(cert_path.parent)
        return self._issue_leaf(issuer, name, kind, cert_path, key_path)

    def issue_many(
        self,
        names: Sequence[str],
        kind: str = "device",
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Credential]:
        """Issue many new credentials with one CA load; `progress(done, total)` after each.

        Checks every name first (bad, repeated or already-existing names → nothing is issued)."""
        if isinstance(names, str):
            raise TypeError("names must be a sequence of names, not one string")
        paths = [self._paths(n, kind) for n in names]
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ValueError(f"credential name {name!r} is given twice")
            seen.add(name)
        clashes = [n for n, (c, k) in zip(names, paths, strict=True) if c.exists() or k.exists()]
        if clashes:
            shown = ", ".join(repr(n) for n in clashes[:3]) + (" …" if len(clashes) > 3 else "")
            raise FileExistsError(f"{len(clashes)} {kind} credential(s) already exist: {shown}")
        issuer = self._issuer()
        if paths:
            _mkdir(paths[0][0].parent)
        total = len(names)
        issued = []
        for i, (name, (cert_path, key_path)) in enumerate(zip(names, paths, strict=True), start=1):
            issued.append(self._issue_leaf(issuer, name, kind, cert_path, key_path))
            if progress is not None:
                progress(i, total)
        return issued

    def load(self, name: str, kind: str = "device") -> Credential:
        """The credential issued earlier; FileNotFoundError if there is none, ValueError if it was
        issued by a CA that has since been replaced."""
        cert_path, key_path = self._paths(name, kind)
        if not cert_path.is_file() or not key_path.is_file():
            raise FileNotFoundError(
                f"no {kind} credential named {name!r} in {cert_path.parent} "
                f"(issue one with DevPKI.issue or `derflex pki device {name}`)"
            )
        leaf = _read_certs(cert_path)[0]
        if self.mica_path.is_file():
            if self._mica_cert is None:
                self._mica_cert = self._mica.cert if self._mica else _read_certs(self.mica_path)[0]
            if not issued_by(leaf, self._mica_cert):
                raise ValueError(
                    f"{cert_path} was issued by another CA than {self.mica_path} (the dev CA was "
                    "re-created); issue it again with overwrite"
                )
        return self._credential(name, kind, cert_path, key_path, leaf)

    def issue_other_ca_device(self, name: str) -> Credential:
        """A device credential from an unrelated CA (its own SERCA and MICA under foreign/ca/).

        For tests that check a foreign CA is refused. Re-issued on every call."""
        validate_name(name)
        issuer = self._foreign_issuer()  # also creates foreign/
        return self._issue_leaf(
            issuer, name, "device", self.foreign_dir / f"{name}.pem", self.foreign_dir / f"{name}.key"
        )

    def _foreign_issuer(self) -> _Issuer:
        if self._foreign_mica is not None:
            return self._foreign_mica
        ca_dir = self.foreign_dir / "ca"
        _mkdir(ca_dir)
        with self._lock():
            serca = self._load_pair(ca_dir / "serca.pem", ca_dir / "serca.key", "foreign SERCA")
            if serca is None:
                cert, key = _make_serca("foreign test SERCA (not trusted by derflex)")
                _write_private(ca_dir / "serca.key", _key_pem(key))
                _write_public(ca_dir / "serca.pem", cert.public_bytes(serialization.Encoding.PEM))
                serca = _make_issuer(cert, key)
                for stale in (ca_dir / "mica.pem", ca_dir / "mica.key"):
                    stale.unlink(missing_ok=True)
            mica = self._load_pair(ca_dir / "mica.pem", ca_dir / "mica.key", "foreign MICA")
            if mica is None:
                cert, key = _make_mica(serca, "foreign test MICA (not trusted by derflex)")
                _write_private(ca_dir / "mica.key", _key_pem(key))
                _write_public(ca_dir / "mica.pem", cert.public_bytes(serialization.Encoding.PEM))
                mica = _make_issuer(cert, key)
        self._foreign_mica = mica
        return mica

    def _issue_leaf(
        self, issuer: _Issuer, name: str, kind: str, cert_path: Path, key_path: Path
    ) -> Credential:
        key = _new_key()
        public = key.public_key()
        hw_name = x509.OtherName(
            OID_HARDWARE_MODULE_NAME, encode_hardware_module_name(_KIND_HW_TYPE[kind], name.encode())
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))  # 2030.5 device certificates identify by SAN, not subject
            .issuer_name(issuer.cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - _BACKDATE)
            .not_valid_after(DEVICE_NOT_AFTER)
            .add_extension(x509.SubjectAlternativeName([hw_name]), critical=True)
            .add_extension(_policies(*_KIND_POLICIES[kind]), critical=True)
            .add_extension(_LEAF_KEY_USAGE, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(issuer.aki, critical=False)
            .sign(issuer.key, hashes.SHA256())
        )
        _write_private(key_path, _key_pem(key))
        _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM) + issuer.pem)
        return self._credential(name, kind, cert_path, key_path, cert)

    @staticmethod
    def _credential(
        name: str, kind: str, cert_path: Path, key_path: Path, leaf: x509.Certificate
    ) -> Credential:
        lfdi = lfdi_from_cert_der(leaf.public_bytes(serialization.Encoding.DER))
        return Credential(name, kind, cert_path, key_path, lfdi, sfdi_from_lfdi(lfdi))

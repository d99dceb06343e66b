"""The dev PKI: the 2030.5 certificate profile of every kind, files on disk, real TLS handshakes."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from server.pki import (
    HW_TYPE_AGGREGATOR,
    HW_TYPE_DEVICE,
    HW_TYPE_OPERATOR,
    OID_HARDWARE_MODULE_NAME,
    POLICY_DEVICE,
    POLICY_OPERATOR,
    POLICY_SERVICE_PROVIDER,
    POLICY_TEST,
    Credential,
    DevPKI,
    certificate_kind,
    check_ca_certificate,
    check_device_certificate,
    check_server_certificate,
    hardware_module_name,
)
from server.pki.profile import (
    POLICY_ANY,
    decode_hardware_module_name,
    encode_hardware_module_name,
    encode_oid,
)
from server.sep2.identity import lfdi_from_cert_der, sfdi_from_lfdi

NOT_AFTER_9999 = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
CIPHER = "ECDHE-ECDSA-AES128-CCM8"


@dataclass(frozen=True)
class Bench:
    pki: DevPKI
    device: Credential
    aggregator: Credential
    operator: Credential
    foreign: Credential


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Bench:
    pki = DevPKI(tmp_path_factory.mktemp("pki") / "certs")
    assert pki.ensure() is True
    return Bench(
        pki=pki,
        device=pki.issue("dev-1"),
        aggregator=pki.issue("agg-1", "aggregator"),
        operator=pki.issue("op-1", "operator"),
        foreign=pki.issue_other_ca_device("intruder"),
    )


def certs_in(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def leaf(cred: Credential) -> x509.Certificate:
    return certs_in(cred.cert_path)[0]


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def ext(cert: x509.Certificate, cls: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(cls)


def serca(bench: Bench) -> x509.Certificate:
    return certs_in(bench.pki.serca_path)[0]


def mica(bench: Bench) -> x509.Certificate:
    return certs_in(bench.pki.mica_path)[0]


def server_leaf(bench: Bench) -> x509.Certificate:
    return certs_in(bench.pki.server_cert_path)[0]


# --- the profile of each kind -------------------------------------------------------------------

CLIENT_KINDS = [
    ("device", HW_TYPE_DEVICE, [POLICY_DEVICE, POLICY_TEST]),
    ("aggregator", HW_TYPE_AGGREGATOR, [POLICY_DEVICE, POLICY_TEST, POLICY_SERVICE_PROVIDER]),
    ("operator", HW_TYPE_OPERATOR, [POLICY_DEVICE, POLICY_TEST, POLICY_OPERATOR]),
]


@pytest.mark.parametrize(("kind", "hw_type", "policies"), CLIENT_KINDS, ids=[k[0] for k in CLIENT_KINDS])
def test_client_certificate_profile(
    bench: Bench, kind: str, hw_type: x509.ObjectIdentifier, policies: list[x509.ObjectIdentifier]
) -> None:
    cred: Credential = getattr(bench, kind)
    cert = leaf(cred)
    assert cred.kind == kind

    assert cert.subject == x509.Name([])
    assert cert.issuer == mica(bench).subject
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(cert.public_key().curve, ec.SECP256R1)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.signature_algorithm_oid.dotted_string == "1.2.840.10045.4.3.2"

    now = dt.datetime.now(dt.UTC)
    assert now - dt.timedelta(hours=1) < cert.not_valid_before_utc <= now
    assert cert.not_valid_after_utc == NOT_AFTER_9999
    assert b"\x18\x0f99991231235959Z" in der(cert)  # GeneralizedTime, as the profile demands

    san = ext(cert, x509.SubjectAlternativeName)
    assert san.critical
    assert len(list(san.value)) == 1
    (other,) = san.value.get_values_for_type(x509.OtherName)
    assert other.type_id == OID_HARDWARE_MODULE_NAME
    hw = decode_hardware_module_name(other.value)
    assert hw.hw_type == hw_type
    assert hw.hw_serial == cred.name.encode()
    assert hardware_module_name(cert) == hw

    pol = ext(cert, x509.CertificatePolicies)
    assert pol.critical
    assert [p.policy_identifier for p in pol.value] == policies

    ku = ext(cert, x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature and ku.value.key_agreement
    assert not (ku.value.key_cert_sign or ku.value.crl_sign or ku.value.key_encipherment)

    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, x509.BasicConstraints)
    assert [e.oid for e in cert.extensions if e.critical] == [
        x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        x509.oid.ExtensionOID.CERTIFICATE_POLICIES,
        x509.oid.ExtensionOID.KEY_USAGE,
    ]

    assert check_device_certificate(cert) == []
    assert certificate_kind(cert) == kind


def test_only_aggregators_carry_the_service_provider_policy(bench: Bench) -> None:
    """The server may recognise aggregators by POLICY_SERVICE_PROVIDER alone."""
    carriers = [
        cred.kind
        for cred in (bench.device, bench.aggregator, bench.operator)
        if POLICY_SERVICE_PROVIDER
        in [p.policy_identifier for p in ext(leaf(cred), x509.CertificatePolicies).value]
    ]
    assert carriers == ["aggregator"]


def test_serca_profile(bench: Bench) -> None:
    cert = serca(bench)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "derflex dev SERCA"
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    assert cert.not_valid_after_utc == NOT_AFTER_9999
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length is None
    ku = ext(cert, x509.KeyUsage)
    assert (
        ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    )
    pol = ext(cert, x509.CertificatePolicies)
    assert pol.critical and [p.policy_identifier for p in pol.value] == [POLICY_ANY]
    assert check_ca_certificate(cert, root=True) == []
    assert certificate_kind(cert) == "ca"


def test_mica_profile(bench: Bench) -> None:
    cert = mica(bench)
    cert.verify_directly_issued_by(serca(bench))
    assert cert.not_valid_after_utc == NOT_AFTER_9999
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert ext(cert, x509.CertificatePolicies).critical
    assert check_ca_certificate(cert, root=False) == []


def test_server_certificate_profile(bench: Bench) -> None:
    cert = server_leaf(bench)
    cert.verify_directly_issued_by(mica(bench))
    san = ext(cert, x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    ku = ext(cert, x509.KeyUsage)
    assert (
        ku.critical
        and ku.value.digital_signature
        and ku.value.key_agreement
        and not ku.value.key_cert_sign
    )
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    assert ext(cert, x509.CertificatePolicies).critical
    eku = ext(cert, x509.ExtendedKeyUsage)
    assert not eku.critical and ExtendedKeyUsageOID.SERVER_AUTH in eku.value
    assert check_server_certificate(cert) == []
    assert certificate_kind(cert) == "server"


def test_files_hold_the_chain_in_order(bench: Bench) -> None:
    """Leaf first, then the MICA, so load_cert_chain() sends the chain; trust = SERCA + MICA."""
    assert certs_in(bench.pki.trust_path) == [serca(bench), mica(bench)]
    assert certs_in(bench.pki.server_cert_path)[1:] == [mica(bench)]
    for cred in (bench.device, bench.aggregator, bench.operator):
        assert certs_in(cred.cert_path)[1:] == [mica(bench)]


def test_chain_verifies_and_foreign_does_not(bench: Bench) -> None:
    for cred in (bench.device, bench.aggregator, bench.operator):
        leaf(cred).verify_directly_issued_by(mica(bench))
    mica(bench).verify_directly_issued_by(serca(bench))
    with pytest.raises((ValueError, InvalidSignature)):
        leaf(bench.foreign).verify_directly_issued_by(mica(bench))
    foreign_ca = certs_in(bench.foreign.cert_path)[1]
    leaf(bench.foreign).verify_directly_issued_by(foreign_ca)
    assert check_device_certificate(leaf(bench.foreign)) == []  # well-formed, just not ours


def test_identity_is_over_the_leaf_der(bench: Bench) -> None:
    for cred in (bench.device, bench.aggregator, bench.operator, bench.foreign):
        digest = hashlib.sha256(der(leaf(cred))).hexdigest().upper()
        assert cred.lfdi == digest[:40]
        assert cred.sfdi == sfdi_from_lfdi(digest[:40])
    assert len({bench.device.lfdi, bench.aggregator.lfdi, bench.operator.lfdi, bench.foreign.lfdi}) == 4


# --- the profile checker ------------------------------------------------------------------------


def _bad_certificate(bench: Bench) -> x509.Certificate:
    """Signed by the MICA but wrong in every way the device profile cares about."""
    mica_key = serialization.load_pem_private_key(bench.pki.mica_key_path.read_bytes(), None)
    key = ec.generate_private_key(ec.SECP384R1())
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bad")]))
        .issuer_name(mica(bench).subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("bad.example")]), critical=False)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, False, False, False), critical=True
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=True)
        .sign(mica_key, hashes.SHA256())  # type: ignore[arg-type]
    )


def test_checker_reports_each_departure(bench: Bench) -> None:
    problems = "\n".join(check_device_certificate(_bad_certificate(bench)))
    for expected in [
        "P-256",
        "notAfter is",
        "subjectAltName extension must be critical",
        "exactly one otherName hardwareModuleName",
        "certificatePolicies extension is missing",
        "keyUsage is",
        "CA=true",
        "ExtendedKeyUsage",
    ]:
        assert expected in problems, f"{expected!r} not reported in:\n{problems}"


def test_checker_reports_a_malformed_hardware_module_name(bench: Bench) -> None:
    mica_key = serialization.load_pem_private_key(bench.pki.mica_key_path.read_bytes(), None)
    good = leaf(bench.device)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(good.issuer)
        .public_key(good.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(good.not_valid_before_utc)
        .not_valid_after(good.not_valid_after_utc)
    )
    for extension in good.extensions:
        if isinstance(extension.value, x509.SubjectAlternativeName):
            broken = x509.OtherName(OID_HARDWARE_MODULE_NAME, b"\x30\x03\x04\x01x")  # no hwType
            builder = builder.add_extension(x509.SubjectAlternativeName([broken]), critical=True)
        else:
            builder = builder.add_extension(extension.value, critical=extension.critical)
    cert = builder.sign(mica_key, hashes.SHA256())  # type: ignore[arg-type]
    problems = check_device_certificate(cert)
    assert len(problems) == 1 and "hardwareModuleName is malformed" in problems[0]


def test_checkers_tell_kinds_apart(bench: Bench) -> None:
    """A device certificate is no server certificate and vice versa."""
    as_server = "\n".join(check_server_certificate(leaf(bench.device)))
    assert "basicConstraints extension is missing" in as_server
    assert "names no host" in as_server
    as_device = "\n".join(check_device_certificate(server_leaf(bench)))
    assert "notAfter is" in as_device and "hardwareModuleName" in as_device
    assert check_ca_certificate(leaf(bench.device), root=False) != []


def test_checker_reports_expiry(bench: Bench) -> None:
    later = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)
    assert any("expired" in p for p in check_server_certificate(server_leaf(bench), now=later))
    assert check_device_certificate(leaf(bench.device), now=later) == []


# --- the DER codec of hardwareModuleName --------------------------------------------------------


def test_oid_encoding_known_vectors() -> None:
    assert encode_oid("1.3.6.1.5.5.7.8.4") == bytes.fromhex("06082B06010505070804")
    assert encode_oid(HW_TYPE_DEVICE) == bytes.fromhex("0615698392F4C587F5C9D2F6F1A59C90E6AFABCBE94701")  # openssl asn1parse -genstr
    assert encode_oid("2.999.3") == bytes.fromhex("0603883703")


def test_oid_encoding_agrees_with_cryptography(bench: Bench) -> None:
    """cryptography wrote these policy OIDs into the certificate; our encoder must agree bytewise."""
    cert_der = der(leaf(bench.operator))
    for oid in (POLICY_DEVICE, POLICY_TEST, POLICY_OPERATOR):
        assert encode_oid(oid) in cert_der


def test_hardware_module_name_round_trip() -> None:
    long_serial = bytes(range(256)) * 2  # forces a long-form DER length
    for serial in (b"", b"dev-1", long_serial):
        encoded = encode_hardware_module_name(HW_TYPE_AGGREGATOR, serial)
        assert decode_hardware_module_name(encoded) == (HW_TYPE_AGGREGATOR, serial)
    assert (
        encode_hardware_module_name(HW_TYPE_DEVICE, b"ab")
        == bytes.fromhex("301B0615698392F4C587F5C9D2F6F1A59C90E6AFABCBE947010402") + b"ab"
    )


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        bytes.fromhex("301B0615698392F4C587F5C9D2F6F1A59C90E6AFABCBE947010402") + b"ab" + b"\x00",  # trailing byte
        bytes.fromhex("311B0615698392F4C587F5C9D2F6F1A59C90E6AFABCBE947010402") + b"ab",  # SET, not SEQUENCE
        bytes.fromhex("3010040A2B0601040182BE1C63010402") + b"ab",  # hwType not an OID
        bytes.fromhex("3010060A2B0601040182BE1C63010C02") + b"ab",  # serial a UTF8String
        bytes.fromhex("3081100 60A2B0601040182BE1C63010402".replace(" ", ""))
        + b"ab",  # non-minimal length
        bytes.fromhex("3020060A2B0601040182BE1C63010402") + b"ab",  # length beyond the data
    ],
)
def test_hardware_module_name_rejects_malformed(blob: bytes) -> None:
    with pytest.raises(ValueError):
        decode_hardware_module_name(blob)


# --- files on disk ------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_keys_are_0600_and_folders_0700(bench: Bench) -> None:
    pki = bench.pki
    keys = [pki.serca_key_path, pki.mica_key_path, pki.server_key_path] + [
        c.key_path for c in (bench.device, bench.aggregator, bench.operator, bench.foreign)
    ]
    assert {str(k): _mode(k) for k in keys} == {str(k): 0o600 for k in keys}
    for folder in (
        pki.root,
        bench.device.cert_path.parent,
        bench.aggregator.cert_path.parent,
        pki.foreign_dir,
    ):
        assert _mode(folder) == 0o700, folder


def test_keys_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        cred = DevPKI(tmp_path / "certs").issue("loose")
    finally:
        os.umask(old)
    assert _mode(cred.key_path) == 0o600
    assert _mode(cred.cert_path.parent) == 0o700


def test_keys_are_pkcs8_and_match_their_certificates(bench: Bench) -> None:
    for cred in (bench.device, bench.aggregator, bench.operator):
        pem = cred.key_path.read_bytes()
        assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
        key = serialization.load_pem_private_key(pem, None)
        assert key.public_key() == leaf(cred).public_key()


def test_issue_refuses_to_overwrite(bench: Bench) -> None:
    before = bench.device.cert_path.read_bytes(), bench.device.key_path.read_bytes()
    with pytest.raises(FileExistsError, match="dev-1"):
        bench.pki.issue("dev-1")
    with pytest.raises(FileExistsError):
        bench.pki.issue_many(["fresh-1", "dev-1"])
    assert (bench.device.cert_path.read_bytes(), bench.device.key_path.read_bytes()) == before
    assert not (bench.device.cert_path.parent / "fresh-1.pem").exists()


def test_overwrite_replaces_and_load_reads_back(tmp_path: Path) -> None:
    pki = DevPKI(tmp_path / "certs")
    first = pki.issue("box")
    assert pki.load("box") == first
    second = pki.issue("box", overwrite=True)
    assert second.lfdi != first.lfdi
    assert pki.load("box") == second


def test_load_of_unknown_credential_fails_clearly(bench: Bench) -> None:
    with pytest.raises(FileNotFoundError, match="no aggregator credential named 'ghost'"):
        bench.pki.load("ghost", "aggregator")


def test_load_refuses_credentials_of_a_replaced_ca(tmp_path: Path) -> None:
    pki = DevPKI(tmp_path / "certs")
    pki.issue("old")
    for path in (pki.serca_path, pki.serca_key_path):
        path.unlink()
    fresh = DevPKI(pki.root)
    assert fresh.ensure() is True
    with pytest.raises(ValueError, match="another CA"):
        fresh.load("old")


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../evil", "a/b", "a\\b", ".hidden", "with space", "é", "x" * 129, "nul\x00"]
)
def test_bad_names_are_rejected(bench: Bench, name: str) -> None:
    with pytest.raises(ValueError, match="invalid credential name"):
        bench.pki.issue(name)
    with pytest.raises(ValueError, match="invalid credential name"):
        bench.pki.load(name)
    with pytest.raises(ValueError, match="invalid credential name"):
        bench.pki.issue_other_ca_device(name)


def test_bad_kind_is_rejected(bench: Bench) -> None:
    with pytest.raises(ValueError, match="unknown credential kind"):
        bench.pki.issue("x", "server")


def test_issue_many(tmp_path: Path) -> None:
    pki = DevPKI(tmp_path / "certs")
    calls: list[tuple[int, int]] = []
    creds = pki.issue_many(
        [f"n{i}" for i in range(25)], "aggregator", progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(i, 25) for i in range(1, 26)]
    assert [c.name for c in creds] == [f"n{i}" for i in range(25)]
    assert len({c.lfdi for c in creds}) == 25
    assert all(certificate_kind(leaf(c)) == "aggregator" for c in creds)
    assert pki.load("n7", "aggregator") == creds[7]
    with pytest.raises(ValueError, match="twice"):
        pki.issue_many(["a", "b", "a"])
    assert not (pki.root / "devices" / "a.pem").exists()


def test_ensure_is_idempotent_and_adds_hosts(tmp_path: Path) -> None:
    pki = DevPKI(tmp_path / "certs")
    assert not pki.exists()
    assert pki.ensure() is True
    assert pki.exists()
    files = [pki.serca_path, pki.mica_path, pki.trust_path, pki.server_cert_path, pki.server_key_path]
    snapshot = [p.read_bytes() for p in files]
    assert pki.ensure() is False
    assert DevPKI(pki.root).ensure(["127.0.0.1"]) is False
    assert [p.read_bytes() for p in files] == snapshot

    assert pki.ensure(["derflex.test", "10.1.2.3"]) is True
    assert [p.read_bytes() for p in files[:3]] == snapshot[:3]  # the CA is untouched
    san = ext(certs_in(pki.server_cert_path)[0], x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == ["derflex.test", "localhost"]
    assert sorted(str(ip) for ip in san.get_values_for_type(x509.IPAddress)) == ["10.1.2.3", "127.0.0.1"]
    with pytest.raises(ValueError, match="invalid host name"):
        pki.ensure(["bad host"])


def test_constructing_touches_nothing(tmp_path: Path) -> None:
    DevPKI(tmp_path / "certs")
    assert list(tmp_path.iterdir()) == []


def test_half_a_ca_is_an_error_not_a_silent_new_ca(tmp_path: Path) -> None:
    pki = DevPKI(tmp_path / "certs")
    pki.ensure()
    pki.mica_key_path.unlink()
    with pytest.raises(ValueError, match="incomplete"):
        pki.ensure()


# --- real TLS handshakes ------------------------------------------------------------------------


@dataclass
class ServerResult:
    peer_der: bytes | None = None
    cipher: tuple | None = None
    error: BaseException | None = None


def _server_context(pki: DevPKI, trust: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHER)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(trust)
    ctx.load_cert_chain(pki.server_cert_path, pki.server_key_path)
    return ctx


def _client_context(trust: Path, cred: Credential | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname=True, CERT_REQUIRED
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHER)
    ctx.load_verify_locations(trust)
    if cred is not None:
        ctx.load_cert_chain(cred.cert_path, cred.key_path)
    return ctx


@contextlib.contextmanager
def tls_server(ctx: ssl.SSLContext) -> Iterator[tuple[int, ServerResult]]:
    """A one-connection TLS server on 127.0.0.1; the result is filled in when the block ends."""
    result = ServerResult()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    result.peer_der = tls.getpeercert(binary_form=True)
                    result.cipher = tls.cipher()
                    tls.sendall(b"ok")
                    with contextlib.suppress(OSError):  # a polite close_notify; the peer may be gone
                        tls.unwrap()
            except (OSError, ssl.SSLError) as exc:
                result.error = exc

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield listener.getsockname()[1], result
        finally:
            thread.join(timeout=10)
    assert not thread.is_alive()


def _connect(port: int, ctx: ssl.SSLContext, hostname: str) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        return tls.recv(2)


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
@pytest.mark.parametrize("kind", ["device", "aggregator"])
def test_tls_handshake_with_a_dev_credential(bench: Bench, hostname: str, kind: str) -> None:
    cred: Credential = getattr(bench, kind)
    server_ctx = _server_context(bench.pki, bench.pki.trust_path)
    with tls_server(server_ctx) as (port, result):
        assert _connect(port, _client_context(bench.pki.trust_path, cred), hostname) == b"ok"
    assert result.error is None
    assert result.cipher is not None and result.cipher[0] == CIPHER and result.cipher[1] == "TLSv1.2"
    assert result.peer_der is not None
    assert lfdi_from_cert_der(result.peer_der) == cred.lfdi


def test_tls_chain_is_sent_by_both_sides(bench: Bench) -> None:
    """Trusting only the SERCA works because each side sends its MICA along with its leaf."""
    with tls_server(_server_context(bench.pki, bench.pki.serca_path)) as (port, result):
        assert _connect(port, _client_context(bench.pki.serca_path, bench.device), "localhost") == b"ok"
    assert result.error is None
    assert lfdi_from_cert_der(result.peer_der or b"") == bench.device.lfdi


def test_tls_refuses_a_foreign_ca(bench: Bench) -> None:
    with (
        tls_server(_server_context(bench.pki, bench.pki.trust_path)) as (port, result),
        pytest.raises(ssl.SSLError),
    ):
        _connect(port, _client_context(bench.pki.trust_path, bench.foreign), "localhost")
    assert isinstance(result.error, ssl.SSLError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(result.error)
    assert result.peer_der is None


def test_tls_refuses_a_client_without_certificate(bench: Bench) -> None:
    with (
        tls_server(_server_context(bench.pki, bench.pki.trust_path)) as (port, result),
        pytest.raises(ssl.SSLError),
    ):
        _connect(port, _client_context(bench.pki.trust_path, None), "localhost")
    assert isinstance(result.error, ssl.SSLError)
    assert result.peer_der is None


def test_tls_client_checks_the_server_name(bench: Bench) -> None:
    with (
        tls_server(_server_context(bench.pki, bench.pki.trust_path)) as (port, result),
        pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"),
    ):
        _connect(port, _client_context(bench.pki.trust_path, bench.device), "derflex.example")
    assert result.peer_der is None


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_openssl_s_client_verifies_the_server(bench: Bench) -> None:
    with tls_server(_server_context(bench.pki, bench.pki.trust_path)) as (port, result):
        run = subprocess.run(
            [
                "openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-cipher", CIPHER,
                "-CAfile", str(bench.pki.trust_path), "-verify_return_error",
                "-verify_hostname", "localhost",
                "-cert", str(bench.device.cert_path), "-key", str(bench.device.key_path),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=20,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Verify return code: 0 (ok)" in run.stdout
    assert result.error is None
    assert lfdi_from_cert_der(result.peer_der or b"") == bench.device.lfdi


# --- the command line ---------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from server.cli.pki import pki

    return CliRunner(env=env).invoke(pki, list(args))


def test_cli_init_device_bulk_show(tmp_path: Path) -> None:
    folder = str(tmp_path / "certs")
    first = _cli("init", "--dir", folder, "--host", "derflex.test")
    assert first.exit_code == 0, first.output
    assert "Created in" in first.output and "serca.pem" in first.output
    again = _cli("init", "--dir", folder)
    assert again.exit_code == 0 and "already exists; nothing created" in again.output

    issued = _cli("device", "meter-7", "--aggregator", "--dir", folder)
    assert issued.exit_code == 0, issued.output
    cred = DevPKI(Path(folder)).load("meter-7", "aggregator")
    assert f"LFDI: {cred.lfdi}\n" in issued.output and f"SFDI: {cred.sfdi}\n" in issued.output
    assert "Created in" not in issued.output  # the CA already existed

    bulk = _cli("bulk", "3", "--prefix", "ev-", "--dir", folder)
    assert bulk.exit_code == 0, bulk.output
    more = _cli("bulk", "2", "--prefix", "ev-", "--dir", folder)
    assert more.exit_code == 0 and "ev-00004 … ev-00005" in more.output
    assert sorted(p.name for p in (tmp_path / "certs" / "devices").glob("*.pem")) == [
        f"ev-0000{i}.pem" for i in range(1, 6)
    ]

    shown = _cli("show", "aggregators/meter-7.pem", "--dir", folder)
    assert shown.exit_code == 0, shown.output
    for line in (f"LFDI:       {cred.lfdi}", f"SFDI:       {cred.sfdi}", "Kind:       aggregator",
                 "notAfter:   9999-12-31T23:59:59Z", "Subject:    (empty)", "issued by the dev CA",
                 "conforms to the 2030.5 device (client) certificate profile"):  # fmt: skip
        assert line in shown.output


def test_cli_errors_are_one_line_messages(tmp_path: Path) -> None:
    folder = str(tmp_path / "certs")
    assert _cli("device", "twice", "--dir", folder).exit_code == 0
    for args, message in [
        (("device", "twice", "--dir", folder), "already exists"),
        (("device", "../up", "--dir", folder), "invalid credential name"),
        (("device", "x", "--aggregator", "--operator", "--dir", folder), "at most one"),
        (("bulk", "0", "--dir", folder), "0"),
        (("show", "missing.pem", "--dir", folder), "no such file"),
        (("show", "serca.key", "--dir", folder), "not a PEM or DER X.509 certificate"),
    ]:
        result = _cli(*args)
        assert result.exit_code != 0, args
        assert isinstance(result.exception, SystemExit), result.exception  # not a traceback
        assert "Error:" in result.output and message in result.output, result.output


def test_cli_default_folder_comes_from_the_environment(tmp_path: Path) -> None:
    result = _cli(
        "init", env={"DERFLEX_PKI_DIR": str(tmp_path / "a"), "DERFLEX_HOME": str(tmp_path / "b")}
    )
    assert result.exit_code == 0 and (tmp_path / "a" / "trust.pem").is_file()
    result = _cli("init", env={"DERFLEX_PKI_DIR": "", "DERFLEX_HOME": str(tmp_path / "b")})
    assert result.exit_code == 0 and (tmp_path / "b" / "certs" / "trust.pem").is_file()

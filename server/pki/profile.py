"""The IEEE 2030.5 certificate profile: its object identifiers and a checker for certificates.

`check_device_certificate` and `check_server_certificate` (and `check_ca_certificate`) return a
list of human-readable problems; an empty list means the certificate conforms. They are used by the
tests and by `derflex pki show`, and help an operator judge a certificate a vendor hands them.

The profile (IEEE 2030.5 §6.11, all P-256 / ECDSA-SHA256):

* device (client) certificate: subject may be empty; notAfter 9999-12-31T23:59:59Z; a critical
  subjectAltName holding exactly one otherName hardwareModuleName (RFC 4108); critical
  certificatePolicies with a device-type policy under 1.3.6.1.4.1.40732.1; critical keyUsage
  digitalSignature + keyAgreement; every other extension non-critical.
* server certificate: critical subjectAltName (dNSName / iPAddress), critical keyUsage
  digitalSignature + keyAgreement, critical basicConstraints CA=false, critical certificatePolicies;
  other extensions (extendedKeyUsage serverAuth, key identifiers) non-critical.
* CA certificates (SERCA, MICA): critical basicConstraints CA=true, critical keyUsage
  keyCertSign + cRLSign, critical certificatePolicies.

It also holds the tiny DER codec for hardwareModuleName (SEQUENCE { hwType OID, hwSerialNum OCTET
STRING }), which `cryptography` carries only as opaque bytes inside an `x509.OtherName`.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

# --- Object identifiers -------------------------------------------------------------------------

#: RFC 4108 id-on-hardwareModuleName: the otherName type of a 2030.5 device's subjectAltName.
OID_HARDWARE_MODULE_NAME = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.4")

#: 2030.5 arc for device-type policies (§6.11.7.2); every device certificate carries one of them.
DEVICE_TYPE_ARC = "1.3.6.1.4.1.40732.1"
#: 2030.5 device type "generic device" — the device-type policy of every derflex dev credential.
POLICY_DEVICE = x509.ObjectIdentifier("1.3.6.1.4.1.40732.1.1")
#: 2030.5 policy "test certificate" (§6.11.7.3): carried by all dev-PKI material.
POLICY_TEST = x509.ObjectIdentifier("1.3.6.1.4.1.40732.2.1")
#: 2030.5 policy "self-signed" (not used by the dev PKI; named so `show` can explain it).
POLICY_SELF_SIGNED = x509.ObjectIdentifier("1.3.6.1.4.1.40732.2.2")
#: 2030.5 policy "service provider": the dev PKI marks aggregator credentials with it.
POLICY_SERVICE_PROVIDER = x509.ObjectIdentifier("1.3.6.1.4.1.40732.2.3")
#: 2030.5 policy "bulk certificate" (not used by the dev PKI).
POLICY_BULK = x509.ObjectIdentifier("1.3.6.1.4.1.40732.2.4")
#: X.509 anyPolicy: what the dev SERCA and MICA carry, so they constrain no leaf policy.
POLICY_ANY = x509.ObjectIdentifier("2.5.29.32.0")

# derflex-private identifiers, under a UUID-based arc (ITU-T X.667: 2.25.<UUID as an integer>),
# which anyone may mint without registration; the UUID is uuid5(URL, "https://derflex.invalid/oid").
# Used only in development material, which never leaves a test bench. A production PKI brings its
# own hwType (the manufacturer's) and never these.
#: hwType of dev device credentials.
HW_TYPE_DEVICE = x509.ObjectIdentifier("2.25.267779935070374511182968887465307468999.1")
#: hwType of dev aggregator credentials.
HW_TYPE_AGGREGATOR = x509.ObjectIdentifier("2.25.267779935070374511182968887465307468999.2")
#: hwType of dev operator credentials.
HW_TYPE_OPERATOR = x509.ObjectIdentifier("2.25.267779935070374511182968887465307468999.3")
#: Policy marking a dev operator credential. Informational: the server grants the aggregator role
#: only to LFDIs an operator named (never from a policy), and operators use the admin API's tokens.
POLICY_OPERATOR = x509.ObjectIdentifier("2.25.267779935070374511182968887465307468999.10")

DEVICE_NOT_AFTER = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)

_POLICY_NAMES = {
    POLICY_DEVICE.dotted_string: "2030.5 generic device",
    "1.3.6.1.4.1.40732.1.2": "2030.5 mobile device",
    "1.3.6.1.4.1.40732.1.3": "2030.5 post-manufacture device",
    POLICY_TEST.dotted_string: "2030.5 test certificate",
    POLICY_SELF_SIGNED.dotted_string: "2030.5 self-signed",
    POLICY_SERVICE_PROVIDER.dotted_string: "2030.5 service provider",
    POLICY_BULK.dotted_string: "2030.5 bulk certificate",
    POLICY_ANY.dotted_string: "anyPolicy",
    POLICY_OPERATOR.dotted_string: "derflex dev operator",
}


def policy_name(oid: x509.ObjectIdentifier) -> str:
    """A readable label for a policy OID, e.g. "1.3.6.1.4.1.40732.2.1 (2030.5 test certificate)"."""
    label = _POLICY_NAMES.get(oid.dotted_string)
    return f"{oid.dotted_string} ({label})" if label else oid.dotted_string


# --- hardwareModuleName DER ---------------------------------------------------------------------


class HardwareModuleName(NamedTuple):
    hw_type: x509.ObjectIdentifier
    hw_serial: bytes


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _base128(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def encode_oid(oid: x509.ObjectIdentifier | str) -> bytes:
    """DER of an OBJECT IDENTIFIER (tag, length and content)."""
    dotted = oid.dotted_string if isinstance(oid, x509.ObjectIdentifier) else oid
    arcs = [int(a) for a in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40):
        raise ValueError(f"not a valid object identifier: {dotted!r}")
    body = _base128(40 * arcs[0] + arcs[1]) + b"".join(_base128(a) for a in arcs[2:])
    return _der_tlv(0x06, body)


def encode_hardware_module_name(hw_type: x509.ObjectIdentifier, hw_serial: bytes) -> bytes:
    """DER of HardwareModuleName ::= SEQUENCE { hwType OBJECT IDENTIFIER, hwSerialNum OCTET STRING }."""
    return _der_tlv(0x30, encode_oid(hw_type) + _der_tlv(0x04, bytes(hw_serial)))


def _read_tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """(tag, content, position after) of the DER element at `pos`; strict about lengths."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise ValueError("non-minimal DER length")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, data[pos : pos + length], pos + length


def _decode_oid_body(body: bytes) -> x509.ObjectIdentifier:
    if not body or body[-1] & 0x80:
        raise ValueError("malformed OBJECT IDENTIFIER")
    values: list[int] = []
    current = 0
    for i, byte in enumerate(body):
        if current == 0 and byte == 0x80 and (i == 0 or not body[i - 1] & 0x80):
            raise ValueError("non-minimal OBJECT IDENTIFIER arc")
        current = (current << 7) | (byte & 0x7F)
        if not byte & 0x80:
            values.append(current)
            current = 0
    first = values[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return x509.ObjectIdentifier(".".join(str(v) for v in head + values[1:]))


def decode_hardware_module_name(der: bytes) -> HardwareModuleName:
    """Parse the DER of a HardwareModuleName; ValueError if it is anything else."""
    tag, seq, end = _read_tlv(der, 0)
    if tag != 0x30 or end != len(der):
        raise ValueError("hardwareModuleName is not a single DER SEQUENCE")
    tag, oid_body, pos = _read_tlv(seq, 0)
    if tag != 0x06:
        raise ValueError("hardwareModuleName.hwType is not an OBJECT IDENTIFIER")
    tag, serial, pos = _read_tlv(seq, pos)
    if tag != 0x04:
        raise ValueError("hardwareModuleName.hwSerialNum is not an OCTET STRING")
    if pos != len(seq):
        raise ValueError("hardwareModuleName has extra fields")
    return HardwareModuleName(_decode_oid_body(oid_body), serial)


def hardware_module_name(cert: x509.Certificate) -> HardwareModuleName | None:
    """The hardwareModuleName in the certificate's subjectAltName, or None if there is none."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == OID_HARDWARE_MODULE_NAME:
            return decode_hardware_module_name(other.value)
    return None


# --- Classification -----------------------------------------------------------------------------


def certificate_policies(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.CertificatePolicies)
    except x509.ExtensionNotFound:
        return []
    return [p.policy_identifier for p in ext.value]


def certificate_kind(cert: x509.Certificate) -> str:
    """What a certificate is for: "ca", "server", "aggregator", "operator" or "device".

    Clients are told apart by policy: POLICY_SERVICE_PROVIDER → aggregator, POLICY_OPERATOR →
    operator, anything else → device."""
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return "ca"
    except x509.ExtensionNotFound:
        pass
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.SERVER_AUTH in eku:
            return "server"
    except x509.ExtensionNotFound:
        pass
    policies = certificate_policies(cert)
    if POLICY_SERVICE_PROVIDER in policies:
        return "aggregator"
    if POLICY_OPERATOR in policies:
        return "operator"
    return "device"


# --- Checks -------------------------------------------------------------------------------------

_KEY_USAGE_FLAGS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


def _key_usages(ku: x509.KeyUsage) -> set[str]:
    used = {flag for flag in _KEY_USAGE_FLAGS if getattr(ku, flag)}
    if ku.key_agreement:
        used |= {f for f in ("encipher_only", "decipher_only") if getattr(ku, f)}
    return used


def _check_crypto(cert: x509.Certificate, problems: list[str]) -> None:
    if cert.version != x509.Version.v3:
        problems.append(f"version is {cert.version.name}, expected v3")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        problems.append("public key is not an EC P-256 (secp256r1) key")
    if not isinstance(cert.signature_hash_algorithm, hashes.SHA256) or (
        cert.signature_algorithm_oid.dotted_string != "1.2.840.10045.4.3.2"
    ):
        problems.append("signature algorithm is not ecdsa-with-SHA256")


def _require(
    cert: x509.Certificate,
    ext_class: type[x509.ExtensionType],
    label: str,
    problems: list[str],
) -> x509.Extension | None:
    try:
        ext = cert.extensions.get_extension_for_class(ext_class)
    except x509.ExtensionNotFound:
        problems.append(f"{label} extension is missing")
        return None
    if not ext.critical:
        problems.append(f"{label} extension must be critical")
    return ext


def _check_key_usage(ext: x509.Extension | None, wanted: set[str], problems: list[str]) -> None:
    if ext is None:
        return
    got = _key_usages(ext.value)
    if got != wanted:
        problems.append(
            f"keyUsage is {{{', '.join(sorted(got)) or 'nothing'}}}, "
            f"expected exactly {{{', '.join(sorted(wanted))}}}"
        )


def _check_other_critical(cert: x509.Certificate, allowed: set[str], problems: list[str]) -> None:
    for ext in cert.extensions:
        if ext.critical and ext.oid.dotted_string not in allowed:
            problems.append(
                f"extension {type(ext.value).__name__} ({ext.oid.dotted_string}) must not be critical"
            )


def _check_validity_now(cert: x509.Certificate, problems: list[str], now: dt.datetime | None) -> None:
    now = now or dt.datetime.now(dt.UTC)
    if cert.not_valid_before_utc > now:
        problems.append(
            f"not valid before {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} (in the future)"
        )
    if cert.not_valid_after_utc < now:
        problems.append(f"expired on {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")


# The extensions a 2030.5 leaf (device or server) marks critical; any other must not be.
_LEAF_CRITICAL = frozenset(
    {
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME.dotted_string,
        ExtensionOID.CERTIFICATE_POLICIES.dotted_string,
        ExtensionOID.KEY_USAGE.dotted_string,
        ExtensionOID.BASIC_CONSTRAINTS.dotted_string,
    }
)


def check_device_certificate(cert: x509.Certificate, *, now: dt.datetime | None = None) -> list[str]:
    """Problems of a 2030.5 device/aggregator/operator (client) certificate; [] = conforms."""
    problems: list[str] = []
    _check_crypto(cert, problems)
    _check_validity_now(cert, problems, now)
    if cert.not_valid_after_utc != DEVICE_NOT_AFTER:
        problems.append(
            f"notAfter is {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}, expected 9999-12-31T23:59:59Z"
        )

    san = _require(cert, x509.SubjectAlternativeName, "subjectAltName", problems)
    if san is not None:
        names = list(san.value)
        hw = [
            n for n in names if isinstance(n, x509.OtherName) and n.type_id == OID_HARDWARE_MODULE_NAME
        ]
        if len(names) != 1 or len(hw) != 1:
            problems.append(
                f"subjectAltName must hold exactly one otherName hardwareModuleName "
                f"(has {len(names)} name(s), {len(hw)} hardwareModuleName)"
            )
        for other in hw:
            try:
                decode_hardware_module_name(other.value)
            except ValueError as exc:
                problems.append(f"hardwareModuleName is malformed: {exc}")

    pol = _require(cert, x509.CertificatePolicies, "certificatePolicies", problems)
    if pol is not None:
        oids = [p.policy_identifier.dotted_string for p in pol.value]
        if not any(o.startswith(DEVICE_TYPE_ARC + ".") for o in oids):
            problems.append(f"certificatePolicies has no device-type policy under {DEVICE_TYPE_ARC}")

    ku = _require(cert, x509.KeyUsage, "keyUsage", problems)
    _check_key_usage(ku, {"digital_signature", "key_agreement"}, problems)

    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            problems.append("basicConstraints says CA=true on a device certificate")
    except x509.ExtensionNotFound:
        pass

    _check_other_critical(cert, _LEAF_CRITICAL, problems)
    return problems


def check_server_certificate(cert: x509.Certificate, *, now: dt.datetime | None = None) -> list[str]:
    """Problems of a 2030.5 server certificate as a strict client sees it; [] = conforms."""
    problems: list[str] = []
    _check_crypto(cert, problems)
    _check_validity_now(cert, problems, now)

    san = _require(cert, x509.SubjectAlternativeName, "subjectAltName", problems)
    if san is not None:
        hosts = san.value.get_values_for_type(x509.DNSName) + san.value.get_values_for_type(
            x509.IPAddress
        )
        if not hosts:
            problems.append("subjectAltName names no host (dNSName or iPAddress)")

    ku = _require(cert, x509.KeyUsage, "keyUsage", problems)
    _check_key_usage(ku, {"digital_signature", "key_agreement"}, problems)

    bc = _require(cert, x509.BasicConstraints, "basicConstraints", problems)
    if bc is not None and bc.value.ca:
        problems.append("basicConstraints says CA=true on a server certificate")

    _require(cert, x509.CertificatePolicies, "certificatePolicies", problems)

    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.SERVER_AUTH not in eku:
            problems.append("extendedKeyUsage lacks serverAuth")
    except x509.ExtensionNotFound:
        pass

    _check_other_critical(cert, _LEAF_CRITICAL, problems)
    return problems


def check_ca_certificate(
    cert: x509.Certificate, *, root: bool, now: dt.datetime | None = None
) -> list[str]:
    """Problems of a SERCA (`root=True`, self-signed) or MICA (`root=False`, pathlen 0)."""
    problems: list[str] = []
    _check_crypto(cert, problems)
    _check_validity_now(cert, problems, now)

    bc = _require(cert, x509.BasicConstraints, "basicConstraints", problems)
    if bc is not None:
        if not bc.value.ca:
            problems.append("basicConstraints says CA=false on a CA certificate")
        elif not root and bc.value.path_length != 0:
            problems.append(f"MICA pathLenConstraint is {bc.value.path_length}, expected 0")
    ku = _require(cert, x509.KeyUsage, "keyUsage", problems)
    if ku is not None:
        got = _key_usages(ku.value)
        if not {"key_cert_sign", "crl_sign"} <= got:
            problems.append("keyUsage lacks keyCertSign and cRLSign")
    _require(cert, x509.CertificatePolicies, "certificatePolicies", problems)
    if root and cert.issuer != cert.subject:
        problems.append("a SERCA must be self-signed (issuer differs from subject)")
    _check_other_critical(
        cert,
        {
            ExtensionOID.CERTIFICATE_POLICIES.dotted_string,
            ExtensionOID.KEY_USAGE.dotted_string,
            ExtensionOID.BASIC_CONSTRAINTS.dotted_string,
        },
        problems,
    )
    return problems

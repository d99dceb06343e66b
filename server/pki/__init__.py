"""Certificates for IEEE 2030.5 mutual TLS: a development PKI and a checker of the 2030.5 profile.

`DevPKI` makes a SERCA → MICA chain, a server certificate and device / aggregator / operator
credentials for development and tests; `check_device_certificate` / `check_server_certificate`
report how a certificate departs from the 2030.5 profile. Clients are told apart by certificate
policy: aggregators carry POLICY_SERVICE_PROVIDER, operators POLICY_OPERATOR (see `certificate_kind`).
"""

from .devpki import KINDS, Credential, DevPKI, validate_name
from .profile import (
    HW_TYPE_AGGREGATOR,
    HW_TYPE_DEVICE,
    HW_TYPE_OPERATOR,
    OID_HARDWARE_MODULE_NAME,
    POLICY_DEVICE,
    POLICY_OPERATOR,
    POLICY_SERVICE_PROVIDER,
    POLICY_TEST,
    HardwareModuleName,
    certificate_kind,
    certificate_policies,
    check_ca_certificate,
    check_device_certificate,
    check_server_certificate,
    hardware_module_name,
)

__all__ = [
    "HW_TYPE_AGGREGATOR",
    "HW_TYPE_DEVICE",
    "HW_TYPE_OPERATOR",
    "KINDS",
    "OID_HARDWARE_MODULE_NAME",
    "POLICY_DEVICE",
    "POLICY_OPERATOR",
    "POLICY_SERVICE_PROVIDER",
    "POLICY_TEST",
    "Credential",
    "DevPKI",
    "HardwareModuleName",
    "certificate_kind",
    "certificate_policies",
    "check_ca_certificate",
    "check_device_certificate",
    "check_server_certificate",
    "hardware_module_name",
    "validate_name",
]

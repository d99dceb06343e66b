"""LFDI, SFDI and check digits (IEEE 2030.5 §6.3.4) against vectors computed independently.

The certificate vectors in tests/data/identity/vectors.json come from sep2cert and openssl, not from
this code base (tests/data/identity/make_vectors.md says how)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.sep2.identity import (
    check_digit,
    has_valid_check_digit,
    is_valid_pin,
    lfdi_from_cert_der,
    normalize_lfdi,
    sfdi_from_lfdi,
    with_check_digit,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "identity"
VECTORS = json.loads((DATA / "vectors.json").read_text())["vectors"]


def _der(file: str) -> bytes:
    cert = x509.load_pem_x509_certificate((DATA / file).read_bytes())
    return cert.public_bytes(serialization.Encoding.DER)


def test_standard_example_sfdi() -> None:
    """The standard's example: LFDI 3E4F45AB31EDFE5B67E343E5E4562E31984E23E5 → SFDI 167261211391."""
    assert sfdi_from_lfdi("3E4F45AB31EDFE5B67E343E5E4562E31984E23E5") == 167261211391


def test_standard_example_pin() -> None:
    """The registration PIN 111115 carries a valid check digit; 111116 does not."""
    assert is_valid_pin(111115)
    assert not is_valid_pin(111116)
    assert with_check_digit(11111) == 111115


@pytest.mark.parametrize(
    ("digits", "expected"),
    [(0, 0), (1, 9), (5, 5), (11111, 5), ("9999", 4), (16726121139, 1), (230756496, 8)],
)
def test_check_digit_makes_digit_sum_a_multiple_of_ten(digits: int | str, expected: int) -> None:
    assert check_digit(digits) == expected
    assert (sum(int(c) for c in str(digits)) + expected) % 10 == 0


@pytest.mark.parametrize("value", [167261211390, 167261211392, 111116, 18])
def test_wrong_check_digit_is_invalid(value: int) -> None:
    assert not has_valid_check_digit(value)


def test_pin_range() -> None:
    assert not is_valid_pin(-1)
    assert not is_valid_pin(1_000_009)  # 7 digits, digit sum 10, still not a PIN
    assert is_valid_pin(19)  # 00001 + check digit 9


def test_vectors_cover_the_edge_cases() -> None:
    """The data holds an LFDI with leading zeros (short SFDI) and an SFDI with check digit 0."""
    assert any(v["lfdi"].startswith("00") for v in VECTORS)
    assert any(v["sfdi"] % 10 == 0 for v in VECTORS)
    assert len(VECTORS) >= 3


@pytest.mark.parametrize("vector", VECTORS, ids=[v["file"] for v in VECTORS])
def test_lfdi_matches_independent_implementation(vector: dict) -> None:
    der = _der(vector["file"])
    assert lfdi_from_cert_der(der) == vector["lfdi"]
    assert vector["sha256_der_openssl"].startswith(vector["lfdi"])
    assert hashlib.sha256(der).hexdigest().upper() == vector["sha256_der_openssl"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["file"] for v in VECTORS])
def test_sfdi_matches_independent_implementation(vector: dict) -> None:
    assert sfdi_from_lfdi(vector["lfdi"]) == vector["sfdi"]
    assert has_valid_check_digit(vector["sfdi"])


def test_lfdi_is_over_the_der_not_the_pem() -> None:
    pem = (DATA / VECTORS[0]["file"]).read_bytes()
    assert lfdi_from_cert_der(pem) != VECTORS[0]["lfdi"]


def test_normalize_lfdi_upper_cases_and_strips() -> None:
    lfdi = "3e4f45ab31edfe5b67e343e5e4562e31984e23e5"
    assert normalize_lfdi(f"  {lfdi}\n") == lfdi.upper()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "3E4F45AB31EDFE5B67E343E5E4562E31984E23E",  # 39 digits
        "3E4F45AB31EDFE5B67E343E5E4562E31984E23E51",  # 41 digits
        "3E4F45AB31EDFE5B67E343E5E4562E31984E23EG",  # not hex
        "3E4F-45AB-31ED-FE5B-67E3-43E5-E456-2E31-984E-23E5",  # display grouping
        "0x3E4F45AB31EDFE5B67E343E5E4562E31984E23",
        "3E4F45AB31EDFE5B67E3 3E5E4562E31984E23E5",
    ],
)
def test_normalize_lfdi_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        normalize_lfdi(text)

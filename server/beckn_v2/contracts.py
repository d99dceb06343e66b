"""Contract and its parts in v2 terms: the status codes core LTS allows, and ours mapped onto them.

An enrollment order (server.beckn.orders: draft → active → cancelled) is a v2 Contract:

    ours        Contract.status.code   Commitment.status.descriptor.code
    (select)    DRAFT                  DRAFT
    draft       DRAFT                  DRAFT
    active      ACTIVE                 ACTIVE
    cancelled   CANCELLED              CLOSED

Settlement.status: DRAFT | COMMITTED | COMPLETE (a settled window is COMPLETE). Consideration.status
is a Descriptor and required by core (the devkits' examples omit it; we send it: the schema wins).
"""

from __future__ import annotations

CONTRACT_CODES = ("DRAFT", "ACTIVE", "CANCELLED", "COMPLETE")
COMMITMENT_CODES = ("DRAFT", "ACTIVE", "CLOSED")
SETTLEMENT_CODES = ("DRAFT", "COMMITTED", "COMPLETE")

_CONTRACT = {None: "DRAFT", "draft": "DRAFT", "active": "ACTIVE", "cancelled": "CANCELLED"}
_COMMITMENT = {None: "DRAFT", "draft": "DRAFT", "active": "ACTIVE", "cancelled": "CLOSED"}


def contract_code(state: str | None) -> str:
    return _CONTRACT[state]


def commitment_code(state: str | None) -> str:
    return _COMMITMENT[state]


def status(code: str) -> dict[str, str]:
    """Contract.status: a Descriptor with its code."""
    if code not in CONTRACT_CODES:
        raise ValueError(code)
    return {"code": code}


def commitment_status(code: str) -> dict[str, dict[str, str]]:
    if code not in COMMITMENT_CODES:
        raise ValueError(code)
    return {"descriptor": {"code": code}}

"""Beckn v2 errors: `{errorCode, errorMessage}` (core `Error`), the codes we answer with, and the
HTTP status of each refusal.

Core LTS gives the error *shape* only; the code numbers follow the CWG draft
`docs/15_Error_Codes.md` (not normative, UNCONFIRMED): the v1 classes 3xxxx (request), 4xxxx
(business), 5xxxx (policy) with v2's renumbering (30006 offer, 30008 contract/order not found, 30009
cancellation reason, 30011/30012 rating), 40007 schema pack not supported, 50006 version, and
60000-60005 for authentication and context. The draft's `{code, message, path}` conflicts with the
yaml; we follow the yaml and put the JSON path at the front of `errorMessage`.

Synchronous answers (core `responses`): 200 Ack; 409 AckNoCallback (accepted, no callback will
follow); 400 NackBadRequest; 401 NackUnauthorized; 500 ServerError.
"""

from __future__ import annotations

from enum import StrEnum

MAX_ERROR_MESSAGE_CHARS = 500


class V2Code(StrEnum):
    INVALID_REQUEST = "30000"
    PROVIDER_NOT_FOUND = "30001"
    RESOURCE_NOT_FOUND = "30004"
    OFFER_NOT_FOUND = "30006"
    FULFILLMENT_UNAVAILABLE = "30007"
    CONTRACT_NOT_FOUND = "30008"
    INVALID_CANCELLATION_REASON = "30009"
    ENTITY_TO_RATE_NOT_FOUND = "30011"
    INVALID_RATING_VALUE = "30012"
    BUSINESS_ERROR = "40000"
    ACTION_NOT_APPLICABLE = "40001"
    QUANTITY_UNAVAILABLE = "40002"
    TRACKING_NOT_SUPPORTED = "40005"
    PACK_NOT_SUPPORTED = "40007"
    POLICY_ERROR = "50000"
    CANCELLATION_NOT_POSSIBLE = "50001"
    UPDATE_NOT_POSSIBLE = "50002"
    VERSION_NOT_SUPPORTED = "50006"
    INVALID_SIGNATURE = "60000"
    SIGNATURE_EXPIRED = "60001"
    KEY_NOT_FOUND = "60002"
    ALGORITHM_MISMATCH = "60003"
    CONTEXT_ERROR = "60005"


class V2Error(ValueError):
    """A refusal: `code`, the dotted JSON `path` (None: the body as a whole), `message`, and the
    HTTP `status` when it is refused synchronously (400 unless said otherwise)."""

    def __init__(self, message: str, path: str | None = None, code: V2Code = V2Code.INVALID_REQUEST,
                 status: int = 400):
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path
        self.code = code
        self.status = status


def error_object(code: V2Code | str, message: str, path: str | None = None) -> dict[str, str]:
    """Core `Error`: `{"errorCode", "errorMessage"}`; the path leads the message when there is one."""
    text = message if path is None else f"{path}: {message}"
    return {"errorCode": str(code), "errorMessage": text[:MAX_ERROR_MESSAGE_CHARS]}


def error_of(exc: V2Error) -> dict[str, str]:
    return error_object(exc.code, exc.message, exc.path)

"""The Beckn v1 error codes (BECKN-005) and the exception every protocol fault is raised as.

A protocol fault (bad JSON, bad context, missing message) is answered at once with a NACK and no
callback ever; its exception names the code, the dotted JSON path that failed (`context.bap_id`,
`context.location.country.code`; None for the body as a whole) and a message fit for the NACK.
Business faults (unknown item, order not found) are not exceptions of this package: the BPP ACKs and
puts the code into the callback's `error`.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """BECKN-005 v1 codes; the value is the string that goes into `error.code`."""

    INVALID_REQUEST = "30000"
    PROVIDER_NOT_FOUND = "30001"
    ITEM_NOT_FOUND = "30004"
    FULFILLMENT_UNAVAILABLE = "30008"
    ORDER_NOT_FOUND = "30010"
    INVALID_CANCELLATION_REASON = "30011"
    INVALID_UPDATE_TARGET = "30012"
    ENTITY_TO_RATE_NOT_FOUND = "30014"
    INVALID_RATING_VALUE = "30015"
    BUSINESS_ERROR = "40000"
    ACTION_NOT_APPLICABLE = "40001"
    QUANTITY_UNAVAILABLE = "40002"
    QUOTE_UNAVAILABLE = "40003"
    PAYMENT_NOT_SUPPORTED = "40004"
    TRACKING_NOT_SUPPORTED = "40005"
    POLICY_ERROR = "50000"
    CANCELLATION_NOT_POSSIBLE = "50001"
    UPDATION_NOT_POSSIBLE = "50002"
    UNSUPPORTED_RATING_CATEGORY = "50003"
    SUPPORT_UNAVAILABLE = "50004"


class BecknError(ValueError):
    """A request the BPP must NACK: `code`, `path` (dotted JSON path or None) and `message`."""

    def __init__(self, message: str, path: str | None = None,
                 code: ErrorCode = ErrorCode.INVALID_REQUEST):
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path
        self.code = code

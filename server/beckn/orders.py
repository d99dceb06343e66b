"""The life of an order (a customer's enrollment of devices in one program), as a state table.

    state     event     -> state
    (none)    init      -> draft       the BAP sent init: terms offered, nothing enrolled
    draft     init      -> draft       init again (changed billing or devices)
    draft     confirm   -> active      devices enrolled; the order id is known to the BAP
    active    update    -> active      devices or curves changed, or an opt-out
    active    cancel    -> cancelled   every device leaves the program
    draft     cancel    -> cancelled   abandoned before confirmation

Anything else is an `OrderError` carrying the v1 code to answer with (50001 cancellation not
possible, 50002 updation not possible, 30010 order not found…). Beckn's own `Order.status` has
only ACTIVE, COMPLETE and CANCELLED: `beckn_status` maps ours onto it (a draft is not an order yet
on the wire: it is shown as ACTIVE only after confirm).
"""

from __future__ import annotations

from enum import StrEnum

from server.beckn.errors import BecknError, ErrorCode

__all__ = ["OrderError", "OrderState", "TRANSITIONS", "beckn_status", "transition"]


class OrderState(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    CANCELLED = "cancelled"


TRANSITIONS: dict[tuple[OrderState | None, str], OrderState] = {
    (None, "init"): OrderState.DRAFT,
    (OrderState.DRAFT, "init"): OrderState.DRAFT,
    (OrderState.DRAFT, "confirm"): OrderState.ACTIVE,
    (OrderState.ACTIVE, "update"): OrderState.ACTIVE,
    (OrderState.ACTIVE, "cancel"): OrderState.CANCELLED,
    (OrderState.DRAFT, "cancel"): OrderState.CANCELLED,
}

_REFUSAL = {
    "cancel": ErrorCode.CANCELLATION_NOT_POSSIBLE,
    "update": ErrorCode.UPDATION_NOT_POSSIBLE,
}


class OrderError(BecknError):
    """A transition the table does not allow."""


def transition(state: OrderState | str | None, event: str) -> OrderState:
    s = OrderState(state) if state is not None else None
    nxt = TRANSITIONS.get((s, event))
    if nxt is None:
        code = _REFUSAL.get(event, ErrorCode.BUSINESS_ERROR)
        what = f"an order that is {s.value}" if s is not None else "an order that does not exist yet"
        raise OrderError(f"cannot {event} {what}", "message.order", code)
    return nxt


def beckn_status(state: OrderState | str) -> str:
    return {"draft": "ACTIVE", "active": "ACTIVE", "cancelled": "CANCELLED"}[OrderState(state).value]

"""The BPP's business logic (docs/beckn.md): one function answers every Beckn v1.1.0 action this
BPP serves with the `message` of its callback. No HTTP, no signing, no outbox: the pipeline
(server.services.bpp.pipeline) calls `handle` in its transaction and wraps the answer.

* `handle(session, request, provider, now)` runs the action in a SAVEPOINT: a business fault
  raises `BecknError(message, path, code)` with its v1 code (30000 malformed message body, 30001
  provider, 30004 item, 30008 device unavailable, 30010 order, 30011 cancellation reason, 30012
  update_target, 30014 entity to rate, 30015 rating value, 40002 quantity, 40005 tracking, 50001
  cancellation / 50002 updation not possible, 50003 rating category…) and the savepoint is rolled
  back, so a refused request changes nothing in the database.
* `order_status_message(session, order, provider, now)`: the `message` of an on_status for an
  order, for unsolicited pushes (e.g. after a window is published).

Where each action's rules live: search, select, aggregate and the meta lists in
`beckn_catalog`; init, confirm, status, update, cancel, track, support and rating in
`beckn_orders`. Orders are scoped to the caller: every order query filters by
request.context.bap_id in SQL. Each message validates against the official v1.1.0 schema of its
callback (tests/beckn_schema.py), except `on_aggregate` (the seed's action has none) and
`rating_categories`, whose items are the schema's category strings (`["Order", "Fulfillment"]`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from server.beckn.envelope import Request
from server.beckn.errors import BecknError, ErrorCode
from server.db.beckn import BecknOrder
from server.services.bpp import catalog, orders, v2contracts
from server.services.bpp.provider import Provider
from server.services.errors import Conflict, Invalid, NotFound, ServiceError

__all__ = ["Provider", "handle", "order_status_message"]


Handler = Callable[[Session, Request, Provider, int], dict[str, Any]]

_HANDLERS: dict[str, Handler] = {
    "search": lambda s, r, p, now: catalog.search(s, r.message, p, now),
    "select": lambda s, r, p, now: catalog.select(s, r.message, p, now),
    "init": orders.init,
    "confirm": orders.confirm,
    "status": orders.status,
    "update": orders.update,
    "cancel": orders.cancel,
    "track": orders.track,
    "support": orders.support,
    "rating": orders.rating,
    "get_rating_categories": lambda s, r, p, now: catalog.rating_categories(),
    "get_cancellation_reasons": lambda s, r, p, now: catalog.cancellation_reasons(),
    "aggregate": lambda s, r, p, now: catalog.aggregate(r.message, now),
}

# The catalog's actions write nothing (server.services.bpp.catalog): a business error in them has
# nothing to roll back, so the pipeline runs them without a savepoint (two round trips fewer).
WITHOUT_WRITES = frozenset({"search", "select", "get_rating_categories", "get_cancellation_reasons", "aggregate"})

_SERVICE_CODES: dict[type[ServiceError], ErrorCode] = {
    Invalid: ErrorCode.INVALID_REQUEST,
    NotFound: ErrorCode.BUSINESS_ERROR,
    Conflict: ErrorCode.BUSINESS_ERROR,
}


def handle(session: Session, request: Request, provider: Provider, now: int) -> dict[str, Any]:
    """The `message` of the callback answering `request`, in the caller's transaction; a
    BecknError (and then nothing written) for a business fault."""
    handler = _HANDLERS.get(request.context.action)
    if handler is None:
        raise BecknError(f"{request.context.action!r} is not an action of this BPP", "context.action",
                         ErrorCode.ACTION_NOT_APPLICABLE)
    savepoint = session.begin_nested()
    try:
        out = handler(session, request, provider, now)
        session.flush()
    except BaseException as exc:
        if savepoint.is_active:
            savepoint.rollback()
        if isinstance(exc, ServiceError):  # a flex rule the action did not translate itself
            code = next((c for t, c in _SERVICE_CODES.items() if isinstance(exc, t)), ErrorCode.BUSINESS_ERROR)
            raise BecknError(exc.message, None, code) from None
        raise
    savepoint.commit()
    return out


def order_status_message(session: Session, order: BecknOrder, provider: Provider, now: int) -> dict[str, Any]:
    """The `message` of an on_status for `order` (the same view a status request gets)."""
    return orders.order_status_message(session, order, provider, now)


def tracking_view(session: Session, order_id: str, provider: Provider, now: int) -> dict[str, Any]:
    """What an order's tracking URL shows (on_track): its status and where each device stands.
    The URL holds the order id (128 random bits) and is the capability; billing is left out."""
    order = session.get(BecknOrder, order_id)
    if order is not None and orders.is_v2(order):
        return v2contracts.status_message(session, order, provider, now)  # a v2 contract's live view
    if order is None or order.state == "draft":
        raise NotFound(f"no order {order_id!r}")
    view = orders.order_view(session, order, provider, now)
    return {"order": {k: view[k] for k in ("id", "status", "items", "fulfillments", "updated_at") if k in view}}

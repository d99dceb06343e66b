"""The outbox's Beckn consumer: BAPs hear of what happened to the program their orders are in.

* a window published or re-published → an unsolicited on_status to the BAP of every active order
  of the program (its devices' events are scheduled);
* a settlement version stored → one, with the settled quote and revenue flows
  (server.services.bpp.settlement), to every order with a device in that settlement run, in any
  state but draft (a customer who left still hears what they earned).

Each on_status is queued in beckn_outbox within the hand-over's transaction (so it exists exactly
when the fact's delivery is marked done), with a receipt per order. Its message_id is derived from
the delivery's idempotency key and the order: the same delivery can never queue two pushes for one
order, and a BAP sees the same message_id if it ever got one twice. The Beckn worker sends it and
retries until `retry_for_s` after it was queued; one the BAP never takes makes the delivery a dead
letter (server.services.bpp.pipeline).
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from server.db import beckn as store
from server.services import outbox
from server.services.bpp import pipeline
from server.services.bpp import settlement as beckn_settlement
from server.services.bpp.actions import Provider


def push_message_id(idempotency_key: str, order_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:derflex:outbox:{idempotency_key}:order:{order_id}"))


class BecknPushes:
    """Consumer `beckn` (server.services.outbox.ROUTES)."""

    name = outbox.BECKN

    def __init__(self, provider: Provider, *, retry_for_s: float):
        self.provider = provider
        self.retry_for_s = retry_for_s

    def orders(self, session: Session, fact: outbox.Fact) -> list[store.BecknOrder]:
        """The orders whose BAPs hear of `fact`."""
        if isinstance(fact, outbox.WindowPublished):
            return list(store.orders_of_program(session, fact.program_id, ("active",)))
        if isinstance(fact, outbox.SettlementStored):
            return beckn_settlement.orders_to_tell(session, fact.run_id)
        return []

    def deliver(self, session: Session, handoff: outbox.Handoff, now: float) -> None:
        for order in self.orders(session, handoff.fact):
            message_id = push_message_id(handoff.key, order.id)
            outbox.note_effect(session, handoff, pipeline.push_ref(message_id), now)
            pipeline.push_order_status(session, order, self.provider, now, message_id=message_id,
                                       deadline=now + self.retry_for_s)

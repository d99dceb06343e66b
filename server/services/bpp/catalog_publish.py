"""The BPP's catalog pushed to a Beckn v2 catalog service (CDS) with `catalog/publish`, whenever
programs change, and what was last published and when.

* A program authored, changed or cancelled records the outbox fact ProgramChanged
  (server.services.flex.programs); its consumer `catalog` (`CatalogPublisher`) queues one
  catalog/publish of the whole catalog as it stands at the hand-over (server.services.bpp.v2catalog:
  every active program as a Resource + Offer; none left: an empty offer list, so the CDS drops
  them) into beckn_outbox, in the hand-over's transaction. From there the Beckn worker signs it
  (BECKN-006, our key), sends it and retries it like any callback (server.services.bpp.pipeline:
  backoff until its deadline, `retry_for_s` after it was queued). Its messageId is derived from
  the delivery's idempotency key, and its receipt (`beckn:<messageId>`) ties it to the fact: a
  publish the CDS never takes before its deadline makes the fact's delivery a dead letter, which
  operators see and replay in the outbox (`derflex outbox`).
* Each publish is the whole catalog, so a newer one makes an older one still pending pointless —
  worse, sent late it would overwrite the newer one at the CDS (updateMode FULL): queueing marks
  the catalog/publish rows still pending `superseded` (never sent again).
* No catalog service configured (DERFLEX_BECKN_CATALOG_URL empty, or the BPP switched off): the
  consumer takes the facts and queues nothing.
* `publish_now` queues one at once (an operator's `derflex beckn catalog --publish`, the admin
  API), e.g. after configuring a catalog service, with a new messageId and no fact.
* `published` is what was last published and when: the newest catalog/publish queued (its state:
  pending, delivered, expired, unanswered, superseded) and the newest the CDS took (delivered),
  with the programs each carried — read from beckn_outbox, where every publish is kept as the exact
  bytes sent.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from server.beckn.timefmt import parse_duration
from server.beckn_v2 import envelope, packs
from server.beckn_v2 import publish as wire
from server.db import beckn as store
from server.services import clock, outbox
from server.services.bpp import pipeline, v2catalog
from server.services.bpp.provider import Provider
from server.services.errors import Conflict

ACTION = wire.PUBLISH_ACTION
SUPERSEDED = "superseded"
DEFAULT_RETRY_S = sum(outbox.DEFAULT_SCHEDULE)  # as a push: until the outbox would give up


def publish_message_id(idempotency_key: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:derflex:outbox:{idempotency_key}:catalog"))


def _iso_ttl(seconds: float) -> str:
    return f"PT{max(1, int(seconds))}S"


def queue_publish(session: Session, provider: Provider, catalog_url: str, now: float, *, message_id: str,
                  deadline: float) -> store.BecknOutbox:
    """One catalog/publish of the catalog as it stands now, queued in beckn_outbox (in the caller's
    transaction) for the Beckn worker to sign and send until `deadline`; older pending ones are
    superseded. The queued row."""
    catalog = v2catalog.catalog(session, provider, int(now))
    ctx = wire.publish_context(
        bpp_id=provider.bpp_id, bpp_uri=provider.v2_uri, message_id=message_id,
        transaction_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:derflex:catalog:{message_id}")),
        now=clock.utc(now), ttl=parse_duration(_iso_ttl(deadline - now)),
        network_id=provider.networks[0] if provider.networks else None,
        schema_context=packs.schema_context(v2catalog.CATALOG_PACKS))
    body = wire.publish_body(ctx, [catalog])
    o = store.BecknOutbox
    session.execute(update(o).where(o.action == ACTION, o.state == "pending")
                    .values(state=SUPERSEDED, claimed_until=0.0, last_error="a newer catalog/publish replaced it"))
    row = o(inbox_id=None, action=ACTION, url=wire.publish_url(catalog_url), bap_id=_service_id(catalog_url),
            message_id=message_id, transaction_id=ctx["transactionId"], body=envelope.render(body), state="pending",
            attempts=0, next_attempt_at=now, claimed_until=0.0, deadline=max(deadline, now + 60), created_time=now)
    session.add(row)
    session.flush()
    return row


def _service_id(catalog_url: str) -> str:
    """Who the publish goes to, in beckn_outbox's addressee column: the service's host."""
    return (urlsplit(catalog_url).netloc or catalog_url)[:255]


class CatalogPublisher:
    """Consumer `catalog` (server.services.outbox.ROUTES): ProgramChanged → one catalog/publish."""

    name = outbox.CATALOG

    def __init__(self, provider: Provider, *, catalog_url: str, retry_for_s: float = DEFAULT_RETRY_S):
        self.provider, self.catalog_url, self.retry_for_s = provider, catalog_url, retry_for_s

    def deliver(self, session: Session, handoff: outbox.Handoff, now: float) -> None:
        if not self.catalog_url or not isinstance(handoff.fact, outbox.ProgramChanged):
            return  # no catalog service: nothing to send (the fact is taken all the same)
        message_id = publish_message_id(handoff.key)
        outbox.note_effect(session, handoff, pipeline.push_ref(message_id), now)
        queue_publish(session, self.provider, self.catalog_url, now, message_id=message_id,
                      deadline=now + self.retry_for_s)


def publish_now(session: Session, provider: Provider, catalog_url: str, now: float, *,
                retry_for_s: float = DEFAULT_RETRY_S) -> dict[str, Any]:
    """Queue a catalog/publish at once (an operator's); 409 without a catalog service. Its view."""
    if not catalog_url:
        raise Conflict("no catalog service is configured (DERFLEX_BECKN_CATALOG_URL is empty)")
    row = queue_publish(session, provider, catalog_url, now, message_id=str(uuid.uuid4()), deadline=now + retry_for_s)
    return _view(row)


def _view(row: store.BecknOutbox | None) -> dict[str, Any] | None:
    if row is None:
        return None
    catalog = (json.loads(row.body).get("message", {}).get("catalogs") or [{}])[0]
    return {"message_id": row.message_id, "url": row.url, "state": row.state, "queued": clock.iso(row.created_time),
            "delivered": clock.iso(row.delivered_time), "attempts": row.attempts, "last_error": row.last_error,
            "catalog_id": catalog.get("id"),
            "resources": [r.get("id") for r in catalog.get("resources") or []],
            "offers": [o.get("id") for o in catalog.get("offers") or []]}


def published(session: Session, catalog_url: str) -> dict[str, Any]:
    """What was last published and when: `{catalog_url, last, last_delivered}` (module docstring);
    None where there is none yet."""
    o = store.BecknOutbox
    last = session.scalars(select(o).where(o.action == ACTION).order_by(o.id.desc()).limit(1)).first()
    took = last if last is not None and last.state == "delivered" else session.scalars(
        select(o).where(o.action == ACTION, o.state == "delivered").order_by(o.id.desc()).limit(1)).first()
    return {"catalog_url": catalog_url or None, "publish_url": wire.publish_url(catalog_url) if catalog_url else None,
            "last": _view(last), "last_delivered": _view(took)}

"""Beckn v2.0.0 catalog publishing: the `catalog/publish` request a BPP sends a Catalog Discovery
Service (CDS), and reading the CDS's `catalog/on_publish` results.

* `POST {cds}/catalog/publish` (core LTS path; `{cds}` the service's base URL) carries
  `{"context", "message": {"catalogs": [Catalog, …]}}` (core CatalogPublishAction, `catalogs`
  minItems 1). Our context: networkId (when we serve one), version, action `catalog/publish`,
  bppId, bppUri, transactionId, messageId, timestamp, ttl, schemaContext (the packs the catalogs
  use). No bapId/bapUri: there is no BAP in this exchange (core Context requires nothing; the
  devkits' publish-catalog.json omits them too).
* No `publishDirectives`: the LTS tag has them (deprecated) inside Catalog, the release branch and
  the devkits in the message; without them the CDS applies the default, `updateMode FULL`: each
  publish replaces what the CDS holds of the catalog, which is what we want (we always send the
  whole catalog, so a cancelled program disappears from the index).
* The CDS answers the POST with an Ack (200; 409 AckNoCallback: accepted, no callback) and later
  `catalog/on_publish` with `results[] {catalogId, status ACCEPTED|REJECTED|PARTIAL, …}` (not read
  by derflex yet: the Ack is what marks a publish delivered).

Pure: no HTTP, no database, no clock of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from server.beckn.timefmt import Duration, render_timestamp
from server.beckn_v2.context import VERSION

PUBLISH_ACTION = "catalog/publish"


def publish_url(catalog_url: str) -> str:
    """Where a catalog/publish goes: the core path under the CDS's base URL."""
    return f"{catalog_url.rstrip('/')}/{PUBLISH_ACTION}"


def publish_context(*, bpp_id: str, bpp_uri: str, transaction_id: str, message_id: str, now: datetime,
                    ttl: Duration, network_id: str | None = None, schema_context: Sequence[str] = ()) -> dict[str, Any]:
    """The context of one catalog/publish (module docstring)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be an aware datetime")
    out: dict[str, Any] = {}
    if network_id:
        out["networkId"] = network_id
    out |= {"version": VERSION, "action": PUBLISH_ACTION, "bppId": bpp_id, "bppUri": bpp_uri,
            "transactionId": transaction_id, "messageId": message_id, "timestamp": render_timestamp(now),
            "ttl": str(ttl)}
    if schema_context:
        out["schemaContext"] = list(schema_context)
    return out


def publish_body(context: dict[str, Any], catalogs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`{"context", "message": {"catalogs"}}`; at least one catalog (core minItems 1)."""
    if not catalogs:
        raise ValueError("a catalog/publish carries at least one catalog")
    return {"context": context, "message": {"catalogs": [dict(c) for c in catalogs]}}

"""The admin API for the Beckn BPP's v2 catalog publishing (JSON, under /admin/api/v1/beckn):
what was last published to the catalog service and when, and publishing now. Same bearer token
and problem+json errors as the rest of the admin API; the rules live in
server.services.bpp.catalog_publish.

    GET    /beckn/catalog            {catalog_url, publish_url, last, last_delivered}: the newest
                                     catalog/publish queued and the newest the service took
    POST   /beckn/catalog/publish    queue a catalog/publish of the catalog as it stands now
                                     (202 with it; 409 when no catalog service is configured)
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from server.api.admin import require_token
from server.api.client import now, runtime
from server.services.bpp import catalog_publish
from server.services.bpp.provider import Provider

bp = Blueprint("admin_beckn", __name__, url_prefix="/admin/api/v1/beckn")
bp.before_request(require_token)


@bp.get("/catalog")
def catalog() -> Response:
    rt = runtime()
    with rt.db.transaction() as s:
        return jsonify(catalog_publish.published(s, rt.settings.beckn_catalog_url))


@bp.post("/catalog/publish")
def publish() -> tuple[Response, int]:
    rt = runtime()
    with rt.db.transaction() as s:
        queued = catalog_publish.publish_now(s, Provider.of(rt.settings), rt.settings.beckn_catalog_url, now())
    return jsonify(queued), 202

"""The 2030.5 DER function set: a device's DERList, its DER, and the four documents it PUTs.

GET (and HEAD) everywhere, through `resource` like every polled document; PUT for DERCapability,
DERSettings, DERStatus and DERAvailability, answered 204. Any other method gets 405 with Allow.
Rules live in server.services.sep2.der.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from server.api.client import client_identity, client_scope, now, runtime
from server.api.sep2 import _body, no_content, resource, rule
from server.db.der import DER_FAMILY
from server.db.repo import Reader
from server.scope import Scope
from server.sep2 import uris
from server.sep2.der import DERAvailability, DERCapability, DERSettings, DERStatus
from server.sep2.paging import parse_page
from server.services.sep2 import der

bp = Blueprint("der", __name__)




@bp.get(rule(uris.DER_LIST))
@resource()
def get_der_list(s: Reader, scope: Scope, edev_id: int) -> object:
    page = parse_page(request.args)
    return der.der_list(s, scope, edev_id, page, runtime().poll_rate(s, "der"))


@bp.get(rule(uris.DER))
@resource()
def get_der(s: Reader, scope: Scope, edev_id: int, der_id: int) -> object:
    return der.der(s, scope, edev_id, der_id)


def _document_routes(template: str, model: type, name: str) -> None:
    """GET and PUT of one of the documents the device reports."""

    @resource(family=DER_FAMILY)
    def get(s: Reader, scope: Scope, edev_id: int, der_id: int) -> object:
        return der.document(s, scope, edev_id, der_id, model)

    def put(edev_id: int, der_id: int) -> Response:
        rt = runtime()
        ident = client_identity()  # no certificate: 403 before the body is read
        posted = _body(model)
        with rt.db.transaction() as s:
            der.put(s, client_scope(s, ident), edev_id, der_id, posted, now())
        return no_content(204)

    bp.add_url_rule(rule(template), f"get_{name}", get, methods=["GET"])
    bp.add_url_rule(rule(template), f"put_{name}", put, methods=["PUT"])


_document_routes(uris.DERCAP, DERCapability, "dercap")
_document_routes(uris.DERG, DERSettings, "derg")
_document_routes(uris.DERS, DERStatus, "ders")
_document_routes(uris.DERA, DERAvailability, "dera")

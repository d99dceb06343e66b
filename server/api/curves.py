"""DER curves: the 2030.5 `dc` resources devices read, and the admin API operators author them with.

    GET    /edev/{id}/derp/{p}/dc[/{c}]                          DERCurveList / DERCurve (cached, sep2 family)
    POST   /admin/api/v1/der-programs/{p}/curves                 {curveType, yRefType, CurveData, …} → 201
    GET    /admin/api/v1/der-programs/{p}/curves                 ?start&limit
    GET    /admin/api/v1/der-programs/{p}/curves/{c}
    DELETE /admin/api/v1/der-programs/{p}/curves/{c}             204; 409 while a control links it

Rules live in server.services.sep2.dc; controls link curves through the DER program endpoints
(`{"opModVoltVar": 3}`).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from server.api.admin import int_arg, json_object, require_token
from server.api.client import now, runtime
from server.api.sep2 import resource, rule
from server.db.repo import Reader
from server.scope import Scope
from server.sep2 import uris
from server.sep2.paging import parse_page
from server.services.sep2 import dc

bp = Blueprint("dc", __name__)
admin_bp = Blueprint("admin_curves", __name__, url_prefix="/admin/api/v1")
admin_bp.before_request(require_token)

_CURVES = "/der-programs/<int(max=2147483647):program_id>/curves"
_CURVE = f"{_CURVES}/<int(max=2147483647):curve_id>"


@bp.get(rule(uris.DC_LIST))
@resource()
def get_dc_list(s: Reader, scope: Scope, edev_id: int, derp_id: int) -> object:
    return dc.curve_list(s, scope, edev_id, derp_id, parse_page(request.args))


@bp.get(rule(uris.DC))
@resource()
def get_dc(s: Reader, scope: Scope, edev_id: int, derp_id: int, dc_id: int) -> object:
    return dc.curve(s, scope, edev_id, derp_id, dc_id)


@admin_bp.post(_CURVES)
def add_curve(program_id: int) -> tuple[Response, int, dict[str, str]]:
    body = json_object()
    with runtime().db.transaction() as s:
        view = dc.add_curve(s, program_id, body, now())
    return jsonify(view), 201, {"Location": f"{admin_bp.url_prefix}/der-programs/{program_id}/curves/{view['id']}"}


@admin_bp.get(_CURVES)
def list_curves(program_id: int) -> Response:
    start, limit = int_arg("start", 0, 2**31), int_arg("limit", 100, 1000)
    with runtime().db.transaction() as s:
        return jsonify(dc.list_curves(s, program_id, start, limit))


@admin_bp.get(_CURVE)
def get_curve(program_id: int, curve_id: int) -> Response:
    with runtime().db.transaction() as s:
        return jsonify(dc.get_curve(s, program_id, curve_id))


@admin_bp.delete(_CURVE)
def delete_curve(program_id: int, curve_id: int) -> tuple[str, int]:
    with runtime().db.transaction() as s:
        dc.delete_curve(s, program_id, curve_id, now())
    return "", 204
